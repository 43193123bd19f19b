//! The chaos run inside `make test`: a seeded workload of at least 2,000 operations with faults
//! at every boundary, then the invariants against the simulator's ledger. `make chaos` runs
//! 10,000 with a fresh seed. A failing seed reproduces: `CHAOS_SEED=<seed> make chaos`.

use gateway_tests::chaos::{ChaosConfig, run};

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chaos_run_holds_every_invariant() {
    let seed = env_number("CHAOS_SEED", 20_261_127);
    let operations = u32::try_from(env_number("CHAOS_OPS", 2_000)).unwrap_or(2_000);
    let report = run(&ChaosConfig::new(seed, operations)).await;
    println!("{}", report.table());
    let total: u64 = report.operations.values().sum();
    assert!(
        total >= u64::from(operations),
        "only {total} operations ran"
    );
    assert!(
        report.faults.values().sum::<u64>() > 0,
        "no fault was injected"
    );
    assert!(
        report.violations.is_empty(),
        "{} violations with seed {seed} (reproduce: CHAOS_SEED={seed} CHAOS_OPS={operations}):\n{}",
        report.violations.len(),
        report.table()
    );
}
