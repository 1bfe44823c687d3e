-- Reference data: the territories of France and the service catalogue.
CREATE TABLE departements (
    code TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    region_code TEXT NOT NULL,
    region_name TEXT NOT NULL,
    zone TEXT,                      -- zone de défense et de sécurité; none for 975 and 989
    kind TEXT NOT NULL,             -- metro, drom, com
    chef_lieu TEXT NOT NULL         -- INSEE code of the chef-lieu
);

CREATE TABLE communes (
    insee TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,             -- commune, arrondissement_municipal
    parent_insee TEXT,              -- the commune of a municipal arrondissement
    departement_code TEXT NOT NULL REFERENCES departements(code),
    population BIGINT,
    lat DOUBLE,
    lon DOUBLE
);
CREATE INDEX communes_departement ON communes(departement_code);

CREATE TABLE postcodes (
    postcode TEXT NOT NULL,
    insee TEXT NOT NULL REFERENCES communes(insee),
    PRIMARY KEY (postcode, insee)
);

CREATE TABLE services (
    code TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    position INTEGER NOT NULL
);

-- Who published or checked a number. Extended with scopes and accounts by the authorities issue.
CREATE TABLE organizations (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    is_demo INTEGER NOT NULL DEFAULT 0,
    created_at TIMESTAMP NOT NULL
);

CREATE TABLE outages (
    id TEXT PRIMARY KEY NOT NULL,
    territory_kind TEXT NOT NULL,
    territory_code TEXT NOT NULL,
    description TEXT NOT NULL,
    status TEXT NOT NULL,           -- active, resolved
    declared_at TIMESTAMP NOT NULL,
    resolved_at TIMESTAMP,
    declared_by TEXT NOT NULL REFERENCES organizations(id),
    is_demo INTEGER NOT NULL DEFAULT 0,
    version INTEGER NOT NULL
);

CREATE TABLE outage_services (
    outage_id TEXT NOT NULL REFERENCES outages(id),
    service_code TEXT NOT NULL REFERENCES services(code),
    PRIMARY KEY (outage_id, service_code)
);

CREATE TABLE numbers (
    id TEXT PRIMARY KEY NOT NULL,
    service_code TEXT NOT NULL REFERENCES services(code),
    territory_kind TEXT NOT NULL,
    territory_code TEXT NOT NULL,
    phone_e164 TEXT NOT NULL,
    label TEXT NOT NULL,
    status TEXT NOT NULL,           -- pending, published, rejected, retired
    provenance_kind TEXT NOT NULL,  -- official, relayed
    organization_id TEXT REFERENCES organizations(id),
    source_url TEXT,
    verified_by TEXT REFERENCES organizations(id),
    outage_id TEXT REFERENCES outages(id),
    valid_from TIMESTAMP NOT NULL,
    valid_until TIMESTAMP,
    published_at TIMESTAMP,
    updated_at TIMESTAMP NOT NULL,
    retired_at TIMESTAMP,
    retire_reason TEXT,
    is_demo INTEGER NOT NULL DEFAULT 0,
    version INTEGER NOT NULL
);
CREATE INDEX numbers_in_force ON numbers(status, service_code, territory_kind, territory_code);
CREATE INDEX numbers_outage ON numbers(outage_id);

-- The ordered log of every change: the one source of the feeds, the events stream and
-- the other instances' snapshots.
CREATE TABLE changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    at TIMESTAMP NOT NULL,
    kind TEXT NOT NULL,             -- number.published, number.corrected, number.retired, outage.declared, outage.resolved
    entity_id TEXT NOT NULL,
    payload TEXT NOT NULL           -- the entity after the change, as JSON
);
CREATE INDEX changes_entity ON changes(entity_id);

-- One row: which reference data has been loaded, so a seeded database is not reloaded.
CREATE TABLE seed_state (
    id INTEGER PRIMARY KEY NOT NULL,
    reference_digest TEXT NOT NULL,
    seeded_at TIMESTAMP NOT NULL
);
