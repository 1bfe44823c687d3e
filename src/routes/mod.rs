//! Thin HTTP handlers, one file per resource, wired with `.service()` so the OpenAPI
//! document is collected from the very routes that are served.

pub mod health;
pub mod lookup;
pub mod numbers;
pub mod outages;
pub mod reference;

use utoipa_actix_web::service_config::ServiceConfig;

/// Registers every API route.
pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(reference::list_services)
        .service(reference::list_departements)
        .service(reference::get_postcode)
        .service(lookup::lookup)
        .service(numbers::list_numbers)
        .service(numbers::get_number)
        .service(numbers::number_history)
        .service(outages::list_outages)
        .service(health::healthz)
        .service(health::readyz);
}
