//! Classification throughput: the engine against `rlibphonenumber` and `phonenumber`, on the same
//! generated world-wide corpus, in one run (the machine is shared, so only ratios within a run
//! mean much). Each library does parse + validity + line type + region for every entry.
//!
//! Run: `cargo bench -p verify-numbers --bench classify` (add `-- --quick` for a short run).

use std::hint::black_box;
use std::time::{Duration, Instant};

use verify_numbers::engine::{Engine, corpus};

/// Runs `work` over the corpus repeatedly for about `budget`, returns entries per second.
fn measure<F: Fn(&str, Option<&str>) -> bool + Sync>(
    entries: &[(String, Option<String>)],
    threads: usize,
    budget: Duration,
    work: F,
) -> f64 {
    let started = Instant::now();
    let done: usize = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let work = &work;
                scope.spawn(move || {
                    let mut count = 0usize;
                    let mut index = t * 997 % entries.len().max(1);
                    while started.elapsed() < budget {
                        for _ in 0..256 {
                            let (input, hint) = &entries[index];
                            black_box(work(input, hint.as_deref()));
                            index += 1;
                            if index == entries.len() {
                                index = 0;
                            }
                            count += 1;
                        }
                    }
                    count
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    done as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let budget = Duration::from_millis(if quick { 700 } else { 3000 });
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());

    let started = Instant::now();
    let engine = Engine::embedded();
    let compile = started.elapsed();
    let entries: Vec<(String, Option<String>)> = corpus::generate(engine, 20_261_125)
        .into_iter()
        .map(|e| (e.input, e.region_hint))
        .collect();
    println!(
        "corpus: {} entries (every territory's example numbers of every type, mutations, national forms with hints, junk)",
        entries.len()
    );
    let formats_started = Instant::now();
    engine.compile_all_formats();
    println!(
        "engine metadata {} compiled in {:.0} ms, formatting rules in {:.0} ms",
        engine.metadata_version(),
        compile.as_secs_f64() * 1e3,
        formats_started.elapsed().as_secs_f64() * 1e3
    );

    let ours = |input: &str, hint: Option<&str>| {
        let c = engine.classify(input, hint.and_then(|h| engine.region(h)));
        c.valid && c.territory.is_some()
    };
    let rlib = |input: &str, hint: Option<&str>| {
        use rlibphonenumber::{PhoneNumber, Region};
        let region = hint.and_then(|h| Region::from_code(h).ok());
        match PhoneNumber::parse(input, region) {
            Ok(n) => {
                let valid = n.is_valid();
                black_box(n.get_type());
                black_box(n.get_region_code());
                valid
            }
            Err(_) => false,
        }
    };
    let database = &*phonenumber::metadata::DATABASE;
    let old = |input: &str, hint: Option<&str>| {
        let id = hint.and_then(|h| h.parse::<phonenumber::country::Id>().ok());
        match phonenumber::parse(id, input) {
            Ok(n) => {
                let valid = n.is_valid_with(database);
                black_box(n.number_type(database));
                black_box(n.country().id());
                valid
            }
            Err(_) => false,
        }
    };
    // Warm every library once over the corpus (lazily compiled regexes, caches).
    for (input, hint) in &entries {
        black_box(ours(input, hint.as_deref()));
        black_box(rlib(input, hint.as_deref()));
    }

    let engine_one = measure(&entries, 1, budget, ours);
    let rlib_one = measure(&entries, 1, budget, rlib);
    // `phonenumber` is slow; a small slice of the same corpus is enough to measure it.
    let slice: Vec<_> = entries.iter().step_by(10).cloned().collect();
    let old_one = measure(&slice, 1, budget, old);
    let engine_all = measure(&entries, cores, budget, ours);
    let rlib_all = measure(&entries, cores, budget, rlib);
    let old_all = measure(&slice, cores, budget, old);

    let full = measure(&entries, 1, budget, |input, hint| {
        let c = verify_numbers::classify(input, hint.and_then(|h| engine.region(h)));
        c.valid
    });

    println!();
    println!(
        "{:<46} {:>14} {:>14}",
        "parse + valid + type + region",
        "1 thread",
        format!("{cores} threads")
    );
    println!(
        "{:<46} {:>12.0}/s {:>12.0}/s",
        "verifyd engine", engine_one, engine_all
    );
    println!(
        "{:<46} {:>12.0}/s {:>12.0}/s",
        "rlibphonenumber 2.2.15", rlib_one, rlib_all
    );
    println!(
        "{:<46} {:>12.0}/s {:>12.0}/s",
        "phonenumber 0.3.10", old_one, old_all
    );
    println!(
        "{:<46} {:>12.0}/s",
        "verifyd full Classification (+carrier, zones, formats)", full
    );
    println!();
    println!(
        "engine / rlibphonenumber: {:.1}x on 1 thread, {:.1}x on {cores}",
        engine_one / rlib_one,
        engine_all / rlib_all
    );
    println!(
        "engine / phonenumber:     {:.0}x on 1 thread, {:.0}x on {cores}",
        engine_one / old_one,
        engine_all / old_all
    );
    println!(
        "engine scaling 1 -> {cores} threads: {:.2}x",
        engine_all / engine_one
    );
}
