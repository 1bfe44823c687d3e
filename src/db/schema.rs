//! The tables, written by hand to the types both backends share (see the migrations).

diesel::table! {
    departements (code) {
        code -> Text,
        name -> Text,
        region_code -> Text,
        region_name -> Text,
        zone -> Nullable<Text>,
        kind -> Text,
        chef_lieu -> Text,
    }
}

diesel::table! {
    communes (insee) {
        insee -> Text,
        name -> Text,
        kind -> Text,
        parent_insee -> Nullable<Text>,
        departement_code -> Text,
        population -> Nullable<BigInt>,
        lat -> Nullable<Double>,
        lon -> Nullable<Double>,
    }
}

diesel::table! {
    postcodes (postcode, insee) {
        postcode -> Text,
        insee -> Text,
    }
}

diesel::table! {
    services (code) {
        code -> Text,
        name -> Text,
        description -> Text,
        position -> Integer,
    }
}

diesel::table! {
    organizations (id) {
        id -> Text,
        name -> Text,
        kind -> Text,
        is_demo -> Integer,
        created_at -> Timestamp,
    }
}

diesel::table! {
    outages (id) {
        id -> Text,
        territory_kind -> Text,
        territory_code -> Text,
        description -> Text,
        status -> Text,
        declared_at -> Timestamp,
        resolved_at -> Nullable<Timestamp>,
        declared_by -> Text,
        is_demo -> Integer,
        version -> Integer,
    }
}

diesel::table! {
    outage_services (outage_id, service_code) {
        outage_id -> Text,
        service_code -> Text,
    }
}

diesel::table! {
    numbers (id) {
        id -> Text,
        service_code -> Text,
        territory_kind -> Text,
        territory_code -> Text,
        phone_e164 -> Text,
        label -> Text,
        status -> Text,
        provenance_kind -> Text,
        organization_id -> Nullable<Text>,
        source_url -> Nullable<Text>,
        verified_by -> Nullable<Text>,
        outage_id -> Nullable<Text>,
        valid_from -> Timestamp,
        valid_until -> Nullable<Timestamp>,
        published_at -> Nullable<Timestamp>,
        updated_at -> Timestamp,
        retired_at -> Nullable<Timestamp>,
        retire_reason -> Nullable<Text>,
        is_demo -> Integer,
        version -> Integer,
        submission_kind -> Nullable<Text>,
        submitted_by -> Nullable<Text>,
        supersedes -> Nullable<Text>,
        comment -> Nullable<Text>,
        decided_by -> Nullable<Text>,
        decided_at -> Nullable<Timestamp>,
        decision_reason -> Nullable<Text>,
    }
}

diesel::table! {
    changes (seq) {
        seq -> BigInt,
        at -> Timestamp,
        kind -> Text,
        entity_id -> Text,
        payload -> Text,
    }
}

diesel::table! {
    seed_state (id) {
        id -> Integer,
        reference_digest -> Text,
        seeded_at -> Timestamp,
    }
}

diesel::joinable!(communes -> departements (departement_code));
diesel::joinable!(postcodes -> communes (insee));
diesel::joinable!(outage_services -> outages (outage_id));
diesel::joinable!(outage_services -> services (service_code));
diesel::joinable!(numbers -> services (service_code));
diesel::joinable!(numbers -> outages (outage_id));

diesel::allow_tables_to_appear_in_same_query!(
    departements,
    communes,
    postcodes,
    services,
    organizations,
    outages,
    outage_services,
    numbers,
    changes,
    seed_state,
);

diesel::table! {
    audit_events (id) {
        id -> Text,
        at -> Timestamp,
        organization_id -> Nullable<Text>,
        account_id -> Nullable<Text>,
        action -> Text,
        entity_kind -> Text,
        entity_id -> Text,
        reason -> Nullable<Text>,
        details -> Nullable<Text>,
    }
}

diesel::table! {
    organization_scopes (organization_id, scope) {
        organization_id -> Text,
        scope -> Text,
    }
}

diesel::table! {
    accounts (id) {
        id -> Text,
        organization_id -> Nullable<Text>,
        role -> Text,
        name -> Text,
        enabled -> Integer,
        created_at -> Timestamp,
    }
}

diesel::table! {
    tokens (jti) {
        jti -> Text,
        account_id -> Text,
        issued_at -> Timestamp,
        expires_at -> Timestamp,
        revoked_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    idempotency_keys (account_id, idempotency_key) {
        account_id -> Text,
        idempotency_key -> Text,
        request_digest -> Text,
        status -> Integer,
        location -> Nullable<Text>,
        etag -> Nullable<Text>,
        body -> Text,
        created_at -> Timestamp,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    audit_events,
    organizations,
    organization_scopes,
    accounts,
    tokens,
    idempotency_keys,
);

diesel::table! {
    webhooks (id) {
        id -> Text,
        url -> Text,
        secret -> Text,
        enabled -> Integer,
        delivered_seq -> BigInt,
        created_at -> Timestamp,
        lease_owner -> Nullable<Text>,
        lease_until -> Nullable<Timestamp>,
    }
}

diesel::table! {
    webhook_deliveries (id) {
        id -> Text,
        webhook_id -> Text,
        seq -> BigInt,
        attempt -> Integer,
        status -> Nullable<Integer>,
        error -> Nullable<Text>,
        at -> Timestamp,
    }
}

diesel::allow_tables_to_appear_in_same_query!(webhooks, webhook_deliveries);
