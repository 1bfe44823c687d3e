//! Answer-assembly microbenchmark of Relai (a profiling aid for tests/load/bench.sh).
//!
//!   cargo run --release --example assemble -- DATA_DIR/relai.db POSTCODE_LIST [ROUNDS]
//!
//! Loads the directory of a database (say the one `tests/load/bench.sh --keep` leaves),
//! renders every postcode's answer once, then copies every answer into one buffer, in the
//! order of the list (the benchmark's wrk order), ROUNDS times, and prints the time per
//! answer: what the lookup's body costs before actix and the kernel take over.
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (db, list) = match (args.get(1), args.get(2)) {
        (Some(db), Some(list)) => (db, list),
        _ => anyhow::bail!("usage: assemble DATA_DIR/relai.db POSTCODE_LIST [ROUNDS]"),
    };
    let rounds: usize = args.get(3).map_or(Ok(20), |r| r.parse())?;
    let url = relai::db::DatabaseUrl::parse(&format!("sqlite://{db}"))?;
    let state = relai::state::AppState::load(relai::db::pool(&url, 2)?)?;
    let postcodes: Vec<String> = std::fs::read_to_string(list)?
        .lines()
        .map(str::trim)
        .filter(|l| l.len() == 5)
        .map(str::to_owned)
        .collect();
    let dir = state.directory();
    let now = relai::store::now();
    let t = Instant::now();
    let mut bytes = 0usize;
    for p in &postcodes {
        bytes += dir
            .postcode_answer(p, now)
            .map_or(0, |a| a.json_bytes(dir.built_at_json()).len());
    }
    println!(
        "first render of {} answers ({} MB): {:.1} ms",
        postcodes.len(),
        bytes >> 20,
        t.elapsed().as_secs_f64() * 1e3
    );
    let t = Instant::now();
    for _ in 0..rounds {
        for p in &postcodes {
            let answer = dir.postcode_answer(p, now).expect("rendered above");
            std::hint::black_box(answer.json_bytes(dir.built_at_json()));
        }
    }
    let per = t.elapsed().as_secs_f64() * 1e9 / (rounds * postcodes.len()) as f64;
    println!("assembly: {per:.0} ns per answer ({rounds} rounds)");
    // Beyond the budget answers are rendered per request: this says the rounds above did not.
    let kept = dir.postcode_index().budget().used() >> 20;
    println!("rendered answers kept: {kept} MB (the answer cache budget)");
    // The floor: the same bytes copied from one buffer per answer (what a cache of
    // whole answers would cost to copy, at ten times the memory).
    {
        let flat: Vec<actix_web::web::Bytes> = postcodes
            .iter()
            .map(|p| {
                dir.postcode_answer(p, now)
                    .unwrap()
                    .json_bytes(dir.built_at_json())
            })
            .collect();
        let t = Instant::now();
        for _ in 0..rounds {
            for b in &flat {
                let mut out = actix_web::web::BytesMut::with_capacity(b.len());
                out.extend_from_slice(b);
                std::hint::black_box(out.freeze());
            }
        }
        let per = t.elapsed().as_secs_f64() * 1e9 / (rounds * postcodes.len()) as f64;
        println!("copy of the same answers kept whole: {per:.0} ns per answer");
    }
    Ok(())
}
