//! Thin HTTP handlers, one file per resource, wired with `.service()` so the OpenAPI
//! document is collected from the very routes that are served.

pub mod admin;
pub mod feeds;
pub mod health;
pub mod lookup;
pub mod metrics;
pub mod moderation;
pub mod numbers;
pub mod outages;
pub mod page;
pub mod reference;
pub mod writes;

use utoipa_actix_web::service_config::ServiceConfig;

/// Registers every API route.
pub fn configure(cfg: &mut ServiceConfig) {
    // The lookup first: it is nearly every request in a crisis, and routes are tried in order.
    cfg.service(lookup::lookup)
        .service(page::index)
        .service(reference::list_services)
        .service(reference::list_departements)
        .service(reference::get_postcode)
        .service(reference::search_communes)
        .service(numbers::list_numbers)
        .service(numbers::numbers_csv)
        .service(numbers::get_number)
        .service(numbers::number_history)
        .service(writes::publish)
        .service(writes::import_csv)
        .service(writes::correct)
        .service(writes::retire)
        .service(moderation::approve)
        .service(moderation::reject)
        .service(moderation::queue)
        .service(moderation::decisions)
        .service(moderation::tip)
        .service(outages::list_outages)
        .service(writes::declare)
        .service(writes::resolve)
        .service(feeds::events)
        .service(feeds::feed_atom)
        .service(feeds::cap_alert)
        .service(feeds::cap_feed)
        .service(feeds::numbers_geojson)
        .service(feeds::departements_geojson)
        .service(health::healthz)
        .service(health::readyz)
        .service(metrics::metrics)
        .service(admin::list_organizations)
        .service(admin::create_organization)
        .service(admin::list_accounts)
        .service(admin::create_account)
        .service(admin::change_account)
        .service(admin::issue_token)
        .service(admin::revoke_token)
        .service(admin::audit)
        .service(admin::register_webhook)
        .service(admin::list_webhooks)
        .service(admin::webhook_deliveries);
}
