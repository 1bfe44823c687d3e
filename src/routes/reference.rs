//! The reference data: service catalogue, départements, postcodes.

use actix_web::{get, web, HttpRequest, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::Postcode;
use crate::error::{ApiError, Problem};
use crate::http::cached_json;
use crate::lookup::DepartementRef;
use crate::model::Service;
use crate::state::AppState;

/// The service catalogue.
#[derive(Serialize, ToSchema)]
pub struct ServiceList {
    /// Every service, in the order a person would look for them.
    pub items: Vec<Service>,
}

/// List the services
///
/// The emergency and help lines Relai knows, by their usual short number.
#[utoipa::path(tag = "reference", responses((status = 200, description = "The catalogue", body = ServiceList)))]
#[get("/v1/services")]
pub async fn list_services(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let dir = state.directory();
    cached_json(
        &req,
        &ServiceList {
            items: dir.atlas().services().to_vec(),
        },
    )
}

/// A département or overseas collectivité.
#[derive(Serialize, ToSchema)]
pub struct DepartementInfo {
    /// Its code: "33", "2A", "971".
    #[schema(example = "33")]
    pub code: String,
    /// Its name.
    #[schema(example = "Gironde")]
    pub name: String,
    /// INSEE code of its région (collectivités have their own code).
    #[schema(example = "75")]
    pub region_code: String,
    /// Name of its région.
    #[schema(example = "Nouvelle-Aquitaine")]
    pub region_name: String,
    /// Zone de défense et de sécurité (a territory of kind `zone`); none for
    /// Saint-Pierre-et-Miquelon and Clipperton.
    #[schema(example = "Sud-Ouest")]
    pub zone: Option<String>,
    /// `metro`, `drom` (overseas département) or `com` (overseas collectivité).
    pub kind: String,
    /// INSEE code of the chef-lieu.
    #[schema(example = "33063")]
    pub chef_lieu: String,
}

/// The départements.
#[derive(Serialize, ToSchema)]
pub struct DepartementList {
    /// Every département and overseas collectivité, by code.
    pub items: Vec<DepartementInfo>,
}

/// List the départements
///
/// Départements and overseas collectivités with their région and defence zone.
#[utoipa::path(tag = "reference", responses((status = 200, description = "The départements", body = DepartementList)))]
#[get("/v1/departements")]
pub async fn list_departements(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let dir = state.directory();
    let items = dir
        .atlas()
        .departements()
        .iter()
        .map(|d| DepartementInfo {
            code: d.code.clone(),
            name: d.name.clone(),
            region_code: d.region_code.clone(),
            region_name: d.region_name.clone(),
            zone: d.zone.clone(),
            kind: d.kind.clone(),
            chef_lieu: d.chef_lieu.clone(),
        })
        .collect();
    cached_json(&req, &DepartementList { items })
}

/// A commune a postcode serves.
#[derive(Serialize, ToSchema)]
pub struct PostcodeCommune {
    /// INSEE code of the commune.
    #[schema(example = "33063")]
    pub insee: String,
    /// Name of the commune.
    #[schema(example = "Bordeaux")]
    pub name: String,
    /// Its département (not derivable from the postcode: 05110 serves communes of 04 and 05).
    pub departement: DepartementRef,
}

/// The communes of a postcode.
#[derive(Serialize, ToSchema)]
pub struct PostcodeInfo {
    /// The postcode asked for.
    #[schema(example = "33000")]
    pub postcode: String,
    /// The communes it serves, by INSEE code.
    pub communes: Vec<PostcodeCommune>,
}

/// Resolve a postcode
///
/// The communes a postcode serves (La Poste's base officielle des codes postaux). CEDEX
/// codes are not in the base and are unknown.
#[utoipa::path(
    tag = "reference",
    params(("postcode" = String, Path, description = "Five-digit postcode", example = "05110")),
    responses(
        (status = 200, description = "The communes", body = PostcodeInfo),
        (status = 400, description = "Not five digits", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown postcode", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/postcodes/{postcode}")]
pub async fn get_postcode(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let postcode =
        Postcode::parse(&path).map_err(|e| ApiError::bad_param("postcode", e.to_string()))?;
    let dir = state.directory();
    let places = dir
        .places_for_postcode(postcode.as_str())
        .ok_or_else(|| ApiError::NotFound(format!("unknown postcode {postcode}")))?;
    let communes = places
        .iter()
        .map(|p| PostcodeCommune {
            insee: p.commune.insee.clone(),
            name: p.commune.name.clone(),
            departement: DepartementRef {
                code: p.commune.departement.clone(),
                name: dir
                    .atlas()
                    .departement(&p.commune.departement)
                    .map(|d| d.name.clone())
                    .unwrap_or_default(),
            },
        })
        .collect();
    cached_json(
        &req,
        &PostcodeInfo {
            postcode: postcode.as_str().to_owned(),
            communes,
        },
    )
}

/// A commune found by name.
#[derive(Serialize, ToSchema)]
pub struct CommuneMatch {
    /// INSEE code (use it with `/v1/lookup?insee=`).
    #[schema(example = "33063")]
    pub insee: String,
    /// Name of the commune.
    #[schema(example = "Bordeaux")]
    pub name: String,
    /// Its département.
    pub departement: DepartementRef,
    /// Its postcodes.
    pub postcodes: Vec<String>,
}

/// Communes found by name.
#[derive(Serialize, ToSchema)]
pub struct CommuneMatches {
    /// At most `limit`, the most populated first.
    pub items: Vec<CommuneMatch>,
}

/// Search for a commune.
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CommuneQuery {
    /// The beginning of the name, in any case, with or without accents (2 to 100 characters).
    #[param(example = "saint etie")]
    pub q: String,
    /// At most this many (1 to 50, default 10).
    pub limit: Option<usize>,
}

/// Find a commune by name
///
/// Communes whose name starts with `q`, ignoring case, accents, hyphens and apostrophes,
/// the most populated first.
#[utoipa::path(
    tag = "reference",
    params(CommuneQuery),
    responses(
        (status = 200, description = "The communes found", body = CommuneMatches),
        (status = 400, description = "Query too short or too long, or bad limit", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/communes")]
pub async fn search_communes(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<CommuneQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = query.q.trim();
    if !(2..=100).contains(&q.chars().count()) {
        return Err(ApiError::bad_param("q", "2 to 100 characters"));
    }
    let limit = query.limit.unwrap_or(10);
    if !(1..=50).contains(&limit) {
        return Err(ApiError::bad_param("limit", "1 to 50"));
    }
    let dir = state.directory();
    let atlas = dir.atlas();
    let items = atlas
        .search_communes(q, limit)
        .into_iter()
        .map(|c| CommuneMatch {
            insee: c.insee.clone(),
            name: c.name.clone(),
            departement: DepartementRef {
                code: c.departement.clone(),
                name: atlas
                    .departement(&c.departement)
                    .map(|d| d.name.clone())
                    .unwrap_or_default(),
            },
            postcodes: atlas
                .postcodes_of(&c.insee)
                .into_iter()
                .map(str::to_owned)
                .collect(),
        })
        .collect();
    cached_json(&req, &CommuneMatches { items })
}
