//! The load client of the benchmark (`tests/load/bench.sh`, see `tests/load/README.md`).
//!
//! * `generate`: a directory of N numbers as CSV files for `relai import`, spread over
//!   communes, départements and defence zones for every service of the catalogue;
//! * `outages`: declares outages in a third of the départements through the API;
//! * `snapshot`: fetches every postcode's lookup once, saves the bytes for nginx and the
//!   list of postcodes that answer 200;
//! * `compare`: checks that two servers give the very same bytes for every postcode;
//! * `writes`: publishes and retires numbers at a steady rate and measures how long a new
//!   number takes to show in a lookup after its 201;
//! * `publish-max`: publishes as fast as C concurrent clients can.
//!
//! Every measuring command ends with one `KEY k=v k=v ...` line that the driver parses.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use rand_core::{OsRng, RngCore};
use relai::domain::PhoneNumber;

#[derive(Parser)]
#[command(about = "Load client of the Relai benchmark (tests/load/bench.sh)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a generated directory of N numbers as CSV files for `relai import`.
    Generate {
        /// Numbers in force to generate.
        #[arg(long)]
        numbers: usize,
        /// The reference data (communes.csv, departements.csv, services.csv).
        #[arg(long, default_value = "seed-data")]
        seed_data: PathBuf,
        /// Where to write numbers-001.csv, numbers-002.csv... (at most the import limit
        /// of rows each).
        #[arg(long)]
        out_dir: PathBuf,
        /// Seed of the pseudo-random placement: the same seed gives the same directory.
        #[arg(long, default_value_t = 2021)]
        seed: u64,
    },
    /// Declare outages in one département out of `every` through POST /v1/outages.
    Outages {
        #[command(flatten)]
        api: Api,
        #[arg(long, default_value = "seed-data")]
        seed_data: PathBuf,
        /// One département out of this many (3: a third).
        #[arg(long, default_value_t = 3)]
        every: usize,
    },
    /// Fetch every postcode's lookup once; save the bodies and the postcodes answered 200.
    Snapshot {
        /// The server, e.g. http://127.0.0.1:18480
        #[arg(long)]
        base: String,
        /// seed-data/postcodes.csv (postcode,insee_code); postcodes are de-duplicated.
        #[arg(long, default_value = "seed-data/postcodes.csv")]
        postcodes: PathBuf,
        /// Directory for <postcode>.json
        #[arg(long)]
        out_dir: PathBuf,
        /// File for the list of postcodes answered 200, one a line.
        #[arg(long)]
        list: PathBuf,
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
    },
    /// Check that two servers answer every lookup of the list with the same bytes.
    Compare {
        #[arg(long)]
        a: String,
        #[arg(long)]
        b: String,
        /// The postcode list written by `snapshot`.
        #[arg(long)]
        list: PathBuf,
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
    },
    /// Publish and retire numbers at a steady rate; time each publish's visibility.
    Writes {
        #[command(flatten)]
        api: Api,
        #[arg(long, default_value = "seed-data")]
        seed_data: PathBuf,
        /// Writes per second, half publishes, half retires of earlier publishes.
        #[arg(long, default_value_t = 200.0)]
        rate: f64,
        /// How long to write: 20s, 500ms, 2m.
        #[arg(long, default_value = "20s", value_parser = parse_duration)]
        duration: Duration,
        /// The most writes waiting for an answer; a tick that finds this many is skipped
        /// (and counted), so a slow server does not pile up an unbounded queue.
        #[arg(long, default_value_t = 64)]
        max_in_flight: usize,
        /// A publish not visible in a lookup after this long counts as not visible.
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        visibility_timeout: Duration,
        /// Pause between two visibility polls (0: a tight loop).
        #[arg(long, default_value = "0ms", value_parser = parse_duration)]
        poll_interval: Duration,
    },
    /// Publish as fast as `concurrency` keep-alive clients can.
    PublishMax {
        #[command(flatten)]
        api: Api,
        #[arg(long, default_value = "seed-data")]
        seed_data: PathBuf,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        duration: Duration,
    },
}

#[derive(clap::Args)]
struct Api {
    /// The server, e.g. http://127.0.0.1:18480
    #[arg(long)]
    base: String,
    /// A bearer token of an authority whose scopes cover every service everywhere.
    #[arg(long, env = "RELAI_BENCH_TOKEN", hide_env_values = true)]
    token: String,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{s:?}: expected e.g. 20s, 500ms, 2m"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" | "" => value,
        "m" => value * 60.0,
        _ => return Err(format!("{s:?}: unit must be ms, s or m")),
    };
    Ok(Duration::from_secs_f64(seconds))
}

// ---------------------------------------------------------------- reference data

struct Departement {
    code: String,
    zone: String,
    /// The first digits of the numbers generated there: "05", "0590"...
    prefix: &'static str,
}

struct Reference {
    services: Vec<String>,
    /// Metropolitan and overseas départements (not the overseas collectivités).
    departements: Vec<Departement>,
    /// (INSEE code, index in `departements`) of the communes of those départements.
    communes: Vec<(String, usize)>,
    /// Communes that have municipal arrondissements (Paris, Lyon, Marseille).
    parents: HashSet<String>,
}

fn read_csv(path: &Path) -> anyhow::Result<Vec<HashMap<String, String>>> {
    let mut reader =
        csv::Reader::from_path(path).with_context(|| format!("reading {}", path.display()))?;
    let headers = reader.headers()?.clone();
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.with_context(|| format!("reading {}", path.display()))?;
        rows.push(
            headers
                .iter()
                .zip(record.iter())
                .map(|(h, v)| (h.to_owned(), v.to_owned()))
                .collect(),
        );
    }
    Ok(rows)
}

fn field<'a>(row: &'a HashMap<String, String>, name: &str) -> anyhow::Result<&'a str> {
    row.get(name)
        .map(String::as_str)
        .with_context(|| format!("no column {name}"))
}

/// Geographic prefixes of the French numbering plan: 01 Île-de-France, 02 north-west,
/// 03 north-east, 04 south-east, 05 south-west; overseas, each département's own range.
fn prefix_for(code: &str, region: &str) -> Option<&'static str> {
    Some(match code {
        "971" => "0590",
        "972" => "0596",
        "973" => "0594",
        "974" => "0262",
        "976" => "0269",
        _ => match region {
            "11" => "01",
            "24" | "28" | "52" | "53" => "02",
            "27" | "32" | "44" => "03",
            "84" | "93" | "94" => "04",
            "75" | "76" => "05",
            _ => return None,
        },
    })
}

impl Reference {
    fn load(dir: &Path) -> anyhow::Result<Reference> {
        let services = read_csv(&dir.join("services.csv"))?
            .iter()
            .map(|r| field(r, "code").map(str::to_owned))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut departements = Vec::new();
        for row in read_csv(&dir.join("departements.csv"))? {
            let kind = field(&row, "kind")?;
            if kind != "metro" && kind != "drom" {
                continue; // overseas collectivités: numbers outside the plan's checks
            }
            let code = field(&row, "code")?.to_owned();
            let Some(prefix) = prefix_for(&code, field(&row, "region")?) else {
                bail!("no phone prefix known for département {code}");
            };
            departements.push(Departement {
                zone: field(&row, "zone_defense")?.to_owned(),
                code,
                prefix,
            });
        }
        let index: HashMap<String, usize> = departements
            .iter()
            .enumerate()
            .map(|(i, d)| (d.code.clone(), i))
            .collect();
        let mut communes = Vec::new();
        let mut parents = HashSet::new();
        for row in read_csv(&dir.join("communes.csv"))? {
            if field(&row, "type")? != "commune" {
                parents.insert(field(&row, "parent_code")?.to_owned());
                continue;
            }
            if let Some(&d) = index.get(field(&row, "departement_code")?) {
                communes.push((field(&row, "insee_code")?.to_owned(), d));
            }
        }
        if services.is_empty() || communes.is_empty() {
            bail!("no services or no communes in {}", dir.display());
        }
        Ok(Reference {
            services,
            departements,
            communes,
            parents,
        })
    }

    /// Communes a write may target: not Paris, Lyon or Marseille as a whole (their
    /// arrondissements take precedence there).
    fn write_targets(&self) -> Vec<String> {
        self.communes
            .iter()
            .filter(|(c, _)| !self.parents.contains(c))
            .map(|(c, _)| c.clone())
            .collect()
    }
}

// ---------------------------------------------------------------- randomness and phones

/// SplitMix64: small, fast, good enough to place numbers and pick communes.
struct Rng(u64);

impl Rng {
    fn seeded(seed: u64) -> Rng {
        Rng(seed)
    }
    fn from_os() -> Rng {
        Rng(OsRng.next_u64())
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

/// Distinct phone numbers per prefix, each checked by Relai's own validator
/// (`relai::domain::PhoneNumber::parse`), so that a generated number is never refused.
#[derive(Default)]
struct Phones {
    counters: HashMap<&'static str, u64>,
    used: HashSet<String>,
}

impl Phones {
    /// The next valid number of a prefix ("05", "0590"...): the counter goes through a
    /// multiplicative permutation of the remaining digits, so the numbers look scattered.
    fn next(&mut self, prefix: &'static str) -> anyhow::Result<String> {
        let width = 10 - prefix.len() as u32;
        let modulus = 10u64.pow(width);
        let counter = self.counters.entry(prefix).or_insert(0);
        for _ in 0..1_000 {
            let n = *counter;
            *counter += 1;
            if n >= modulus {
                break;
            }
            let digits = (n.wrapping_mul(7_654_321) + 58_214_937 % modulus) % modulus;
            let candidate = format!("{prefix}{digits:0width$}", width = width as usize);
            if let Ok(phone) = PhoneNumber::parse(&candidate) {
                if phone.national() == candidate && self.used.insert(candidate.clone()) {
                    return Ok(candidate);
                }
            }
        }
        bail!("no valid phone number left for prefix {prefix}")
    }
}

/// A random metropolitan mobile number (07 3x to 07 9x) that Relai accepts.
fn random_mobile(rng: &mut Rng, used: &mut HashSet<String>) -> String {
    loop {
        let candidate = format!("07{}{:07}", 3 + rng.below(7), rng.below(10_000_000));
        if PhoneNumber::parse(&candidate).is_ok() && used.insert(candidate.clone()) {
            return candidate;
        }
    }
}

// ---------------------------------------------------------------- generate

fn generate(numbers: usize, seed_data: &Path, out_dir: &Path, seed: u64) -> anyhow::Result<()> {
    let reference = Reference::load(seed_data)?;
    let services = &reference.services;
    let mut rng = Rng::seeded(seed);
    let mut phones = Phones::default();

    let mut zones: Vec<(String, &'static str)> = Vec::new();
    for d in &reference.departements {
        if !d.zone.is_empty() && !zones.iter().any(|(z, _)| *z == d.zone) {
            zones.push((d.zone.clone(), d.prefix));
        }
    }
    let zone_slots = zones.len() * services.len();
    let departement_slots = reference.departements.len() * services.len();
    let commune_slots = reference.communes.len() * services.len();
    // Most numbers at commune level, some per département, a few per zone. The zone layer
    // is filled first (one number per service and zone: 120), then at most one number per
    // service and département, the rest per commune (at most one per service and commune).
    // So at every size nearly every service of every commune shows one number, at the most
    // specific level that has one: the answers keep about the same size from 1,000 to
    // 100,000 numbers, and what grows is the directory, not the bytes of a lookup.
    let zone_count = (numbers / 4).min(zone_slots);
    let departement_count = (numbers / 5)
        .min(departement_slots)
        .min(numbers - zone_count);
    let commune_count = numbers - zone_count - departement_count;
    if commune_count > commune_slots {
        bail!("at most {commune_slots} commune-level numbers (one per service and commune)");
    }

    // (service, kind, code, prefix)
    let mut rows: Vec<(usize, &str, String, &'static str)> = Vec::with_capacity(numbers);
    let mut slots: Vec<usize> = (0..zone_slots).collect();
    rng.shuffle(&mut slots);
    for &slot in slots.iter().take(zone_count) {
        let (zone, prefix) = &zones[slot / services.len()];
        rows.push((slot % services.len(), "zone", zone.clone(), prefix));
    }
    let mut slots: Vec<usize> = (0..departement_slots).collect();
    rng.shuffle(&mut slots);
    for &slot in slots.iter().take(departement_count) {
        let d = &reference.departements[slot / services.len()];
        rows.push((
            slot % services.len(),
            "departement",
            d.code.clone(),
            d.prefix,
        ));
    }
    let mut slots: Vec<u32> = (0..commune_slots as u32).collect();
    rng.shuffle(&mut slots);
    for &slot in slots.iter().take(commune_count) {
        let slot = slot as usize;
        let (insee, d) = &reference.communes[slot / services.len()];
        let prefix = reference.departements[*d].prefix;
        rows.push((slot % services.len(), "commune", insee.clone(), prefix));
    }

    std::fs::create_dir_all(out_dir)?;
    let mut files = Vec::new();
    for (i, chunk) in rows.chunks(relai::import::MAX_ROWS).enumerate() {
        let path = out_dir.join(format!("numbers-{:03}.csv", i + 1));
        let mut text = String::with_capacity(chunk.len() * 64);
        text.push_str(relai::import::HEADER);
        text.push('\n');
        for (service, kind, code, prefix) in chunk {
            let service = &services[*service];
            let phone = phones.next(prefix)?;
            text.push_str(&format!(
                "{service},{kind},{code},{phone},Bench {service} {kind} {code},\n"
            ));
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        files.push(path.display().to_string());
    }
    println!(
        "GENERATED numbers={} commune={commune_count} departement={departement_count} zone={zone_count} files={}",
        rows.len(),
        files.join(",")
    );
    Ok(())
}

// ---------------------------------------------------------------- HTTP helpers

fn client(connections: usize) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(connections)
        .timeout(Duration::from_secs(60))
        .build()?)
}

fn base(url: &str) -> String {
    url.trim_end_matches('/').to_owned()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn sorted(mut values: Vec<f64>) -> Vec<f64> {
    values.sort_by(|a, b| a.total_cmp(b));
    values
}

/// `409:3,503:12`, or `none`.
fn by_status(counts: &HashMap<String, u64>) -> String {
    if counts.is_empty() {
        return "none".to_owned();
    }
    let mut items: Vec<_> = counts.iter().collect();
    items.sort();
    items
        .iter()
        .map(|(k, v)| format!("{k}:{v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The status of a failed request, or the kind of transport error.
fn error_key(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timeout".to_owned()
    } else if e.is_connect() {
        "connect".to_owned()
    } else {
        "transport".to_owned()
    }
}

fn publish_body(service: &str, insee: &str, phone: &str) -> serde_json::Value {
    serde_json::json!({
        "service": service,
        "territory": {"kind": "commune", "code": insee},
        "phone": phone,
        "label": format!("Bench write {service} {insee}"),
    })
}

// ---------------------------------------------------------------- outages

async fn outages(api: &Api, seed_data: &Path, every: usize) -> anyhow::Result<()> {
    let reference = Reference::load(seed_data)?;
    let http = client(1)?;
    let url = format!("{}/v1/outages", base(&api.base));
    let some: Vec<&str> = ["15", "17", "18", "112"]
        .into_iter()
        .filter(|s| reference.services.iter().any(|c| c == s))
        .collect();
    let (mut declared, mut all_services) = (0, 0);
    let started = Instant::now();
    for (i, d) in reference
        .departements
        .iter()
        .enumerate()
        .filter(|(i, _)| i % every.max(1) == 0)
    {
        // Every other one covers the whole catalogue, the others the main short numbers.
        let services: Vec<&str> = if i % (2 * every.max(1)) == 0 {
            all_services += 1;
            reference.services.iter().map(String::as_str).collect()
        } else {
            some.clone()
        };
        let response = http
            .post(&url)
            .bearer_auth(&api.token)
            .json(&serde_json::json!({
                "services": services,
                "territory": {"kind": "departement", "code": d.code},
                "description": format!("Panne simulée (banc d'essai) dans le {}", d.code),
            }))
            .send()
            .await?;
        let status = response.status();
        if status.as_u16() != 201 {
            bail!(
                "declaring an outage in {} answered {status}: {}",
                d.code,
                response.text().await.unwrap_or_default()
            );
        }
        declared += 1;
    }
    println!(
        "OUTAGES declared={declared} all_services={all_services} departements={} elapsed_s={:.2}",
        reference.departements.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

// ---------------------------------------------------------------- snapshot and compare

fn distinct_postcodes(path: &Path) -> anyhow::Result<Vec<String>> {
    let mut seen = HashSet::new();
    let mut list = Vec::new();
    for row in read_csv(path)? {
        let postcode = field(&row, "postcode")?;
        if seen.insert(postcode.to_owned()) {
            list.push(postcode.to_owned());
        }
    }
    Ok(list)
}

/// Runs `f` over `items` with `concurrency` tasks; returns the results in order.
async fn for_each<T, R, F, Fut>(items: Vec<T>, concurrency: usize, f: F) -> Vec<R>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(T) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = R> + Send,
{
    let queue = Arc::new(Mutex::new(
        items.into_iter().enumerate().collect::<VecDeque<_>>(),
    ));
    let f = Arc::new(f);
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let queue = queue.clone();
        let f = f.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            loop {
                let next = queue.lock().expect("queue").pop_front();
                let Some((i, item)) = next else { break };
                out.push((i, f(item).await));
            }
            out
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("task"));
    }
    all.sort_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, r)| r).collect()
}

async fn snapshot(
    base_url: &str,
    postcodes: &Path,
    out_dir: &Path,
    list: &Path,
    concurrency: usize,
) -> anyhow::Result<()> {
    let all = distinct_postcodes(postcodes)?;
    std::fs::create_dir_all(out_dir)?;
    let http = client(concurrency)?;
    let base_url = base(base_url);
    let out = out_dir.to_owned();
    let results = for_each(all.clone(), concurrency, move |postcode: String| {
        let http = http.clone();
        let url = format!("{base_url}/v1/lookup?postcode={postcode}");
        let out = out.clone();
        async move {
            let response = http.get(&url).send().await?;
            let status = response.status().as_u16();
            let bytes = response.bytes().await?;
            if status == 200 {
                std::fs::write(out.join(format!("{postcode}.json")), &bytes)?;
            }
            anyhow::Ok((postcode, status, bytes.len()))
        }
    })
    .await;
    let mut ok = Vec::new();
    let mut refused: HashMap<String, u64> = HashMap::new();
    let mut total_bytes = 0usize;
    let mut sizes = Vec::new();
    for r in results {
        let (postcode, status, len) = r?;
        if status == 200 {
            ok.push(postcode);
            total_bytes += len;
            sizes.push(len as f64);
        } else {
            *refused.entry(status.to_string()).or_default() += 1;
        }
    }
    let mut text = ok.join("\n");
    text.push('\n');
    std::fs::write(list, text)?;
    let sizes = sorted(sizes);
    println!(
        "SNAPSHOT distinct={} ok={} refused={} bytes_total={total_bytes} bytes_mean={:.0} bytes_p50={:.0} bytes_max={:.0}",
        all.len(),
        ok.len(),
        by_status(&refused),
        total_bytes as f64 / ok.len().max(1) as f64,
        percentile(&sizes, 50.0),
        sizes.last().copied().unwrap_or(0.0),
    );
    Ok(())
}

async fn compare(a: &str, b: &str, list: &Path, concurrency: usize) -> anyhow::Result<()> {
    let postcodes: Vec<String> = std::fs::read_to_string(list)?
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    let http = client(concurrency)?;
    let (a, b) = (base(a), base(b));
    let results = for_each(postcodes, concurrency, move |postcode: String| {
        let http = http.clone();
        let (ua, ub) = (
            format!("{a}/v1/lookup?postcode={postcode}"),
            format!("{b}/v1/lookup?postcode={postcode}"),
        );
        async move {
            let fetch = |url: String| {
                let http = http.clone();
                async move {
                    let r = http.get(&url).send().await?;
                    let status = r.status().as_u16();
                    let ctype = r
                        .headers()
                        .get(reqwest::header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    anyhow::Ok((status, ctype, r.bytes().await?))
                }
            };
            let (ra, rb) = (fetch(ua).await?, fetch(ub).await?);
            anyhow::Ok((postcode, ra == rb))
        }
    })
    .await;
    let (mut same, mut different) = (0, Vec::new());
    for r in results {
        let (postcode, equal) = r?;
        if equal {
            same += 1;
        } else {
            different.push(postcode);
        }
    }
    println!(
        "COMPARE n={} identical={same} different={}{}",
        same + different.len(),
        different.len(),
        if different.is_empty() {
            String::new()
        } else {
            format!(
                " first_different={}",
                different
                    .iter()
                    .take(5)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(",")
            )
        }
    );
    if !different.is_empty() {
        bail!("the two servers do not give the same bytes (status, content type and body)");
    }
    Ok(())
}

// ---------------------------------------------------------------- writes

#[derive(Default)]
struct WriteStats {
    publishes: AtomicU64,
    retires: AtomicU64,
    /// Successful writes answered within the measuring window.
    in_window: AtomicU64,
    errors: Mutex<HashMap<String, u64>>,
    write_ms: Mutex<Vec<f64>>,
    visible_ms: Mutex<Vec<f64>>,
    not_visible: AtomicU64,
    /// Publishes that the very first lookup after the 201 already showed.
    first_poll: AtomicU64,
    polls: AtomicU64,
}

impl WriteStats {
    fn error(&self, key: String) {
        *self.errors.lock().expect("errors").entry(key).or_default() += 1;
    }
}

/// Polls the commune's lookup with fresh requests until `id` appears; the time from
/// `answered` (the 201) to the response that shows it, or None after `timeout`.
async fn time_visibility(
    http: &reqwest::Client,
    url: &str,
    id: &str,
    answered: Instant,
    timeout: Duration,
    interval: Duration,
    stats: &WriteStats,
) -> Option<Duration> {
    let mut first = true;
    loop {
        stats.polls.fetch_add(1, Ordering::Relaxed);
        if let Ok(response) = http.get(url).send().await {
            let ok = response.status().as_u16() == 200;
            if let Ok(body) = response.text().await {
                let at = answered.elapsed();
                if ok && body.contains(id) {
                    if first {
                        stats.first_poll.fetch_add(1, Ordering::Relaxed);
                    }
                    return Some(at);
                }
            }
        }
        first = false;
        if answered.elapsed() >= timeout {
            return None;
        }
        if !interval.is_zero() {
            tokio::time::sleep(interval).await;
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn writes(
    api: &Api,
    seed_data: &Path,
    rate: f64,
    duration: Duration,
    max_in_flight: usize,
    visibility_timeout: Duration,
    poll_interval: Duration,
) -> anyhow::Result<()> {
    if rate <= 0.0 {
        bail!("--rate must be positive");
    }
    let reference = Reference::load(seed_data)?;
    let communes = Arc::new(reference.write_targets());
    let services = Arc::new(reference.services.clone());
    let http = client(max_in_flight)?;
    let base_url = Arc::new(base(&api.base));
    let token = Arc::new(api.token.clone());
    let stats = Arc::new(WriteStats::default());
    // Published numbers whose visibility check is over, oldest first: the ones to retire.
    let retirable: Arc<Mutex<VecDeque<String>>> = Arc::default();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let mut rng = Rng::from_os();
    let mut used = HashSet::new();
    let period = Duration::from_secs_f64(1.0 / rate);
    let started = Instant::now();
    let window_end = started + duration;
    let mut next = tokio::time::Instant::from_std(started);
    let (mut offered, mut skipped) = (0u64, 0u64);
    let mut tasks = tokio::task::JoinSet::new();

    while next.into_std() < window_end {
        tokio::time::sleep_until(next).await;
        next += period;
        offered += 1;
        if in_flight.load(Ordering::Relaxed) >= max_in_flight {
            skipped += 1;
            continue;
        }
        // Alternate publish and retire; retire only what this run published and checked.
        let retire = if offered % 2 == 0 {
            retirable.lock().expect("queue").pop_front()
        } else {
            None
        };
        in_flight.fetch_add(1, Ordering::Relaxed);
        let (http, base_url, token, stats, retirable, in_flight) = (
            http.clone(),
            base_url.clone(),
            token.clone(),
            stats.clone(),
            retirable.clone(),
            in_flight.clone(),
        );
        match retire {
            Some(id) => {
                tasks.spawn(async move {
                    let sent = Instant::now();
                    let result = http
                        .post(format!("{base_url}/v1/numbers/{id}/retire"))
                        .bearer_auth(token.as_str())
                        .json(&serde_json::json!({"reason": "benchmark: retired again"}))
                        .send()
                        .await;
                    in_flight.fetch_sub(1, Ordering::Relaxed);
                    match result {
                        Ok(r) if r.status().as_u16() == 200 => {
                            let _ = r.bytes().await;
                            stats
                                .write_ms
                                .lock()
                                .expect("stats")
                                .push(sent.elapsed().as_secs_f64() * 1e3);
                            stats.retires.fetch_add(1, Ordering::Relaxed);
                            if Instant::now() <= window_end {
                                stats.in_window.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Ok(r) => stats.error(format!("retire-{}", r.status().as_u16())),
                        Err(e) => stats.error(format!("retire-{}", error_key(&e))),
                    }
                });
            }
            None => {
                let service = services[rng.below(services.len())].clone();
                let insee = communes[rng.below(communes.len())].clone();
                let phone = random_mobile(&mut rng, &mut used);
                tasks.spawn(async move {
                    let sent = Instant::now();
                    let result = http
                        .post(format!("{base_url}/v1/numbers"))
                        .bearer_auth(token.as_str())
                        .json(&publish_body(&service, &insee, &phone))
                        .send()
                        .await;
                    let response = match result {
                        Ok(r) => r,
                        Err(e) => {
                            in_flight.fetch_sub(1, Ordering::Relaxed);
                            stats.error(format!("publish-{}", error_key(&e)));
                            return;
                        }
                    };
                    // The moment the 201 arrived (its headers): visibility counts from here.
                    let answered = Instant::now();
                    let status = response.status().as_u16();
                    let body = response.bytes().await;
                    in_flight.fetch_sub(1, Ordering::Relaxed);
                    if status != 201 {
                        stats.error(format!("publish-{status}"));
                        return;
                    }
                    let id = body
                        .ok()
                        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                        .and_then(|v| v.get("id").and_then(|i| i.as_str()).map(str::to_owned));
                    let Some(id) = id else {
                        stats.error("publish-no-id".to_owned());
                        return;
                    };
                    stats
                        .write_ms
                        .lock()
                        .expect("stats")
                        .push((answered - sent).as_secs_f64() * 1e3);
                    stats.publishes.fetch_add(1, Ordering::Relaxed);
                    if answered <= window_end {
                        stats.in_window.fetch_add(1, Ordering::Relaxed);
                    }
                    let url = format!("{base_url}/v1/lookup?insee={insee}");
                    match time_visibility(
                        &http,
                        &url,
                        &id,
                        answered,
                        visibility_timeout,
                        poll_interval,
                        &stats,
                    )
                    .await
                    {
                        Some(at) => stats
                            .visible_ms
                            .lock()
                            .expect("stats")
                            .push(at.as_secs_f64() * 1e3),
                        None => {
                            stats.not_visible.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    retirable.lock().expect("queue").push_back(id);
                });
            }
        }
    }
    // Let the writes in flight finish (and their visibility checks), within reason.
    let drain_until = Instant::now() + visibility_timeout + Duration::from_secs(30);
    while !tasks.is_empty() {
        let left = drain_until.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, tasks.join_next()).await {
            Ok(_) => {}
            Err(_) => {
                let abandoned = tasks.len();
                tasks.abort_all();
                *stats
                    .errors
                    .lock()
                    .expect("errors")
                    .entry("abandoned".to_owned())
                    .or_default() += abandoned as u64;
                eprintln!("loadgen writes: {abandoned} task(s) still running, abandoned");
                break;
            }
        }
    }
    let window = duration.as_secs_f64();
    let write_ms = sorted(std::mem::take(&mut *stats.write_ms.lock().expect("stats")));
    let visible = sorted(std::mem::take(
        &mut *stats.visible_ms.lock().expect("stats"),
    ));
    let errors = stats.errors.lock().expect("errors").clone();
    let publishes = stats.publishes.load(Ordering::Relaxed);
    println!(
        "WRITES_RESULT target_rate={rate:.1} duration_s={window:.2} offered={offered} skipped={skipped} \
         publishes={publishes} retires={} writes_per_s={:.1} errors={} errors_by_kind={} \
         write_p50_ms={:.2} write_p99_ms={:.2} vis_n={} vis_p50_ms={:.2} vis_p99_ms={:.2} \
         vis_max_ms={:.2} not_visible={} vis_first_poll={} polls_per_publish={:.2}",
        stats.retires.load(Ordering::Relaxed),
        stats.in_window.load(Ordering::Relaxed) as f64 / window,
        errors.values().sum::<u64>(),
        by_status(&errors),
        percentile(&write_ms, 50.0),
        percentile(&write_ms, 99.0),
        visible.len(),
        percentile(&visible, 50.0),
        percentile(&visible, 99.0),
        visible.last().copied().unwrap_or(f64::NAN),
        stats.not_visible.load(Ordering::Relaxed),
        stats.first_poll.load(Ordering::Relaxed),
        stats.polls.load(Ordering::Relaxed) as f64 / publishes.max(1) as f64,
    );
    Ok(())
}

// ---------------------------------------------------------------- publish-max

async fn publish_max(
    api: &Api,
    seed_data: &Path,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<()> {
    let reference = Reference::load(seed_data)?;
    let communes = Arc::new(reference.write_targets());
    let services = Arc::new(reference.services.clone());
    let http = client(concurrency)?;
    let url = Arc::new(format!("{}/v1/numbers", base(&api.base)));
    let token = Arc::new(api.token.clone());
    let used = Arc::new(Mutex::new(HashSet::new()));
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (http, url, token, communes, services, used) = (
            http.clone(),
            url.clone(),
            token.clone(),
            communes.clone(),
            services.clone(),
            used.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng::from_os();
            let mut ok = 0u64;
            let mut late = 0u64;
            let mut errors: HashMap<String, u64> = HashMap::new();
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let service = &services[rng.below(services.len())];
                let insee = &communes[rng.below(communes.len())];
                let phone = random_mobile(&mut rng, &mut used.lock().expect("used"));
                let sent = Instant::now();
                let result = http
                    .post(url.as_str())
                    .bearer_auth(token.as_str())
                    .json(&publish_body(service, insee, &phone))
                    .send()
                    .await;
                match result {
                    Ok(r) if r.status().as_u16() == 201 => {
                        let _ = r.bytes().await;
                        if Instant::now() <= deadline {
                            ok += 1;
                            latencies.push(sent.elapsed().as_secs_f64() * 1e3);
                        } else {
                            late += 1;
                        }
                    }
                    Ok(r) => *errors.entry(r.status().as_u16().to_string()).or_default() += 1,
                    Err(e) => *errors.entry(error_key(&e)).or_default() += 1,
                }
            }
            (ok, late, errors, latencies)
        }));
    }
    let (mut ok, mut late, mut errors, mut latencies) = (0, 0, HashMap::new(), Vec::new());
    for t in tasks {
        let (o, l, e, lat) = t.await?;
        ok += o;
        late += l;
        for (k, v) in e {
            *errors.entry(k).or_default() += v;
        }
        latencies.extend(lat);
    }
    let latencies = sorted(latencies);
    let window = duration.as_secs_f64();
    println!(
        "PUBLISH_RESULT concurrency={concurrency} duration_s={window:.2} ok={ok} late={late} \
         publishes_per_s={:.1} errors={} errors_by_kind={} p50_ms={:.2} p99_ms={:.2} max_ms={:.2}",
        ok as f64 / window,
        errors.values().sum::<u64>(),
        by_status(&errors),
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
        latencies.last().copied().unwrap_or(f64::NAN),
    );
    Ok(())
}

// ---------------------------------------------------------------- main

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Command::Generate {
        numbers,
        seed_data,
        out_dir,
        seed,
    } = &cli.command
    {
        return generate(*numbers, seed_data, out_dir, *seed);
    }
    // One runtime thread: the client shares its core with wrk (see bench.sh), and a
    // single thread keeps it from competing with itself.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match &cli.command {
            Command::Generate { .. } => unreachable!(),
            Command::Outages {
                api,
                seed_data,
                every,
            } => outages(api, seed_data, *every).await,
            Command::Snapshot {
                base,
                postcodes,
                out_dir,
                list,
                concurrency,
            } => snapshot(base, postcodes, out_dir, list, *concurrency).await,
            Command::Compare {
                a,
                b,
                list,
                concurrency,
            } => compare(a, b, list, *concurrency).await,
            Command::Writes {
                api,
                seed_data,
                rate,
                duration,
                max_in_flight,
                visibility_timeout,
                poll_interval,
            } => {
                writes(
                    api,
                    seed_data,
                    *rate,
                    *duration,
                    *max_in_flight,
                    *visibility_timeout,
                    *poll_interval,
                )
                .await
            }
            Command::PublishMax {
                api,
                seed_data,
                concurrency,
                duration,
            } => publish_max(api, seed_data, *concurrency, *duration).await,
        }
    })
}
