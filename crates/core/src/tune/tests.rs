use super::*;

fn node(max: u32) -> NodeLimits {
    NodeLimits { max_memory_mb: max, ..NodeLimits::default() }
}

fn ok(duration_ms: f64) -> Sample {
    Sample { duration_ms, init_ms: None, max_memory_used_mb: 40, error: None, message: None }
}

fn failed(error: &str) -> Sample {
    Sample { error: Some(error.into()), message: Some("it broke".into()), ..ok(5.0) }
}

/// A size whose warm runs all took `ms`.
fn size(memory_mb: u32, ms: f64) -> SizeReport {
    let cold = Sample { init_ms: Some(100.0), ..ok(ms) };
    summarize(memory_mb, Some(&cold), &vec![ok(ms); 5], &Pricing::default())
}

fn oom(memory_mb: u32) -> SizeReport {
    summarize(memory_mb, Some(&failed(OUT_OF_MEMORY)), &[failed(OUT_OF_MEMORY)], &Pricing::default())
}

#[test]
fn sizes_default_to_the_list_capped_by_the_node_and_include_the_current_size() {
    assert_eq!(sizes(None, 128, &node(10_240)).unwrap(), DEFAULT_SIZES.to_vec());
    assert_eq!(sizes(None, 640, &node(1024)).unwrap(), vec![128, 256, 512, 640, 1024]);
    assert_eq!(sizes(Some(&[512, 256, 512]), 256, &node(4096)).unwrap(), vec![256, 512]);
}

#[test]
fn bad_size_lists_name_the_field_and_the_rule() {
    for bad in [&[][..], &[100][..], &[130][..], &[8192][..], &[128; 17][..]] {
        let e = sizes(Some(bad), 128, &node(4096)).unwrap_err();
        assert_eq!(e.field, "memory", "{bad:?}");
    }
    assert!(sizes(Some(&[8192]), 128, &node(4096)).unwrap_err().message.contains("4096 MB"));
    assert_eq!(check_runs(0).unwrap_err().field, "runs");
    assert_eq!(check_runs(MAX_RUNS + 1).unwrap_err().field, "runs");
    assert_eq!(check_runs(3).unwrap(), 3);
}

#[test]
fn strategies_parse_with_their_parameters() {
    assert_eq!(
        Strategy::parse("smallest-not-slower", None, None).unwrap(),
        Strategy::SmallestNotSlower { tolerance: DEFAULT_TOLERANCE }
    );
    assert_eq!(Strategy::parse("balanced", None, Some(0.8)).unwrap(), Strategy::Balanced { weight: 0.8 });
    assert_eq!(Strategy::parse("cost", None, None).unwrap(), Strategy::Cost);
    assert_eq!(Strategy::parse("fastest", None, None).unwrap_err().field, "strategy");
    assert_eq!(Strategy::parse("speed", Some(2.0), None).unwrap_err().field, "tolerance");
    assert_eq!(Strategy::parse("balanced", None, Some(-0.1)).unwrap_err().field, "weight");
    let json = serde_json::to_value(Strategy::SmallestNotSlower { tolerance: 0.1 }).unwrap();
    assert_eq!(json, serde_json::json!({"name": "smallest-not-slower", "tolerance": 0.1}));
}

#[test]
fn batches_fit_the_cores_when_cpu_follows_memory_and_run_alone_otherwise() {
    let all = DEFAULT_SIZES;
    // 2 cores: 128..1536 need 72+144+289+578+868 = 1951 thousandths; 2048 and 3072 need a batch each.
    assert_eq!(batches(&all, 2, 24_000, true), vec![vec![128, 256, 512, 1024, 1536], vec![2048], vec![3072]]);
    assert_eq!(batches(&all, 2, 24_000, false).len(), all.len());
    // The memory budget splits too.
    assert_eq!(batches(&[512, 1024, 1536], 8, 2048, true), vec![vec![512, 1024], vec![1536]]);
}

#[test]
fn a_size_summarises_warm_runs_the_cold_start_errors_and_cost() {
    let cold = Sample { init_ms: Some(250.0), ..ok(30.0) };
    let mut warm: Vec<Sample> = (1..=10).map(|i| ok(f64::from(i) * 10.0)).collect();
    warm[9].duration_ms = 10_000.0; // an outlier, trimmed
    let r = summarize(1024, Some(&cold), &warm, &Pricing { per_gb_second: 1.0, per_request: 0.0 });
    assert_eq!((r.runs, r.errors, r.out_of_memory), (10, 0, false));
    // Trimmed: 20..=90 → mean 55.
    assert_eq!(r.warm_ms, Some(55.0));
    assert_eq!(r.warm_p90_ms, Some(90.0));
    assert_eq!((r.init_ms, r.cold_ms), (Some(250.0), Some(280.0)));
    // 55 ms at 1 GB = 0.055 GB-s.
    assert!((r.cost.unwrap() - 0.055).abs() < 1e-9);
    assert!(r.usable());

    let r = summarize(128, Some(&failed(OUT_OF_MEMORY)), &[failed(OUT_OF_MEMORY)], &Pricing::default());
    assert!(r.out_of_memory && !r.usable());
    assert_eq!(r.error.as_deref(), Some("Runtime.OutOfMemory: it broke"));
    assert_eq!((r.warm_ms, r.cost, r.cold_ms), (None, None, None));
}

#[test]
fn a_few_warm_runs_are_summarised_by_their_median_so_one_slow_run_does_not_count() {
    let warm = |ms: &[f64]| ms.iter().map(|&d| ok(d)).collect::<Vec<_>>();
    // Three runs, one of them held up by a CPU-quota period: the median, not the mean (3.6).
    let r = summarize(512, None, &warm(&[2.1, 6.6, 2.2]), &Pricing::default());
    assert_eq!(r.warm_ms, Some(2.2));
    let r = summarize(512, None, &warm(&[4.0, 1.0, 2.0, 9.0]), &Pricing::default());
    assert_eq!(r.warm_ms, Some(3.0));
    assert_eq!(typical_duration(&[]), None);
    assert_eq!(typical_duration(&[7.0]), Some(7.0));
    // From 5 runs on, the trimmed mean (nothing trimmed until 10).
    assert_eq!(typical_duration(&[1.0, 2.0, 3.0, 4.0, 10.0]), Some(4.0));
}

#[test]
fn smallest_not_slower_picks_the_smallest_size_within_the_tolerance_of_the_fastest() {
    // CPU-bound: faster with memory until one vCPU.
    let cpu = [size(128, 800.0), size(256, 400.0), size(512, 200.0), size(1024, 100.0), size(2048, 98.0)];
    let s = Strategy::SmallestNotSlower { tolerance: 0.05 };
    let r = recommend(&cpu, 128, &s).unwrap();
    assert_eq!(r.memory_mb, 1024);
    assert!(r.summary.starts_with("128 MB → 1024 MB: 88 % faster"), "{}", r.summary);
    // Flat I/O-bound: the smallest.
    let flat = [size(128, 51.0), size(256, 50.0), size(1024, 50.0)];
    let r = recommend(&flat, 1024, &s).unwrap();
    assert_eq!(r.memory_mb, 128);
    assert!((r.memory_saving - 0.875).abs() < 1e-9);
    assert!(
        r.summary.starts_with("1024 MB → 128 MB: same speed within 2 %, 88 % less memory reserved"),
        "{}",
        r.summary
    );
    // 88 % less GB-s, but the request price stays: (0.83 + 0.2) µ$ → (0.11 + 0.2) µ$.
    assert!((r.cost_saving.unwrap() - 0.70).abs() < 0.01, "{:?}", r.cost_saving);
    // Memory-bound: the sizes that ran out of memory are results, not candidates.
    let mem = [oom(128), oom(256), size(512, 60.0), size(1024, 60.0)];
    assert_eq!(recommend(&mem, 1024, &s).unwrap().memory_mb, 512);
    assert_eq!(recommend(&[oom(128)], 128, &s), None);
    // Sub-millisecond functions: 0.1 ms apart is the same speed, even if it is 25 %.
    let tiny = [size(512, 0.5), size(1024, 0.4)];
    let r = recommend(&tiny, 1024, &s).unwrap();
    assert_eq!(r.memory_mb, 512);
    assert!(r.summary.starts_with("1024 MB → 512 MB: same speed within 0.10 ms"), "{}", r.summary);
    assert_eq!(verdict(&[size(128, 0.5), size(256, 0.4), size(512, 0.41)], &s), Verdict::StopNoGain);
}

#[test]
fn cost_speed_and_balanced_trade_differently() {
    let reports = [size(128, 1000.0), size(512, 200.0), size(1024, 150.0)];
    // Costs ∝ memory × time: 128 000, 102 400, 153 600.
    assert_eq!(recommend(&reports, 128, &Strategy::Cost).unwrap().memory_mb, 512);
    assert_eq!(recommend(&reports, 128, &Strategy::Speed).unwrap().memory_mb, 1024);
    assert_eq!(recommend(&reports, 128, &Strategy::Balanced { weight: 0.5 }).unwrap().memory_mb, 512);
    assert_eq!(recommend(&reports, 128, &Strategy::Balanced { weight: 0.0 }).unwrap().memory_mb, 1024);
    let same = recommend(&reports, 1024, &Strategy::Speed).unwrap();
    assert_eq!(same.summary, "1024 MB is already the right size for this strategy");
}

#[test]
fn the_search_stops_when_two_larger_sizes_bring_nothing() {
    let s = Strategy::SmallestNotSlower { tolerance: 0.05 };
    assert_eq!(verdict(&[size(128, 50.0), size(256, 49.0)], &s), Verdict::Continue, "too few sizes to tell");
    assert_eq!(verdict(&[size(128, 50.0), size(256, 49.0), size(512, 50.0)], &s), Verdict::StopNoGain);
    assert_eq!(verdict(&[size(128, 400.0), size(256, 200.0), size(512, 100.0)], &s), Verdict::Continue);
    // A size that ran out of memory is not a baseline to beat.
    assert_eq!(verdict(&[oom(128), oom(256), size(512, 60.0), size(1024, 60.0)], &s), Verdict::Continue);
    assert_eq!(verdict(&[oom(128), size(512, 60.0), size(1024, 60.0), size(1536, 59.0)], &s), Verdict::StopNoGain);
}

#[test]
fn a_function_failing_at_every_size_for_its_own_reason_stops_the_tune() {
    let s = Strategy::SmallestNotSlower { tolerance: 0.05 };
    let bad = |m| summarize(m, Some(&failed("KeyError")), &[failed("KeyError")], &Pricing::default());
    assert_eq!(verdict(&[bad(128), bad(256)], &s), Verdict::StopFunctionFails("KeyError: it broke".into()));
    // Out of memory or out of time at small sizes is what larger sizes are for.
    assert_eq!(verdict(&[oom(128)], &s), Verdict::Continue);
    let slow = summarize(128, Some(&failed("Sandbox.Timedout")), &[], &Pricing::default());
    assert_eq!(verdict(&[slow], &s), Verdict::Continue);
    assert_eq!(verdict(&[bad(128), size(256, 10.0)], &s), Verdict::Continue);
}

fn share(percentage: u32, ms: f64) -> SizeReport {
    SizeReport { gpu_percentage: Some(percentage), ..size(2048, ms) }
}

#[test]
fn gpu_shares_to_test_are_checked_and_include_the_current_one() {
    assert_eq!(gpu_percentages(None, 100).unwrap(), [10, 25, 50, 75, 100]);
    assert_eq!(gpu_percentages(Some(&[50, 20]), 30).unwrap(), [20, 30, 50]);
    for bad in [&[][..], &[0][..], &[101][..], &[1; 17][..]] {
        assert_eq!(gpu_percentages(Some(bad), 100).unwrap_err().field, "gpu_percentage", "{bad:?}");
    }
}

#[test]
fn the_smallest_gpu_share_that_is_not_slower_is_recommended() {
    let reports = vec![share(100, 50.0), share(10, 100.0), share(50, 50.0), share(25, 51.0)];
    let s = Strategy::SmallestNotSlower { tolerance: 0.05 };
    let r = recommend_gpu(&reports, Dimension::GpuPercentage, Some(100), &s).unwrap();
    assert_eq!(r.gpu_percentage, Some(25));
    assert_eq!(r.current_gpu_percentage, Some(100));
    assert_eq!(r.memory_mb, 2048, "memory is not what a GPU sweep changes");
    assert!((r.gpu_saving.unwrap() - 0.75).abs() < 1e-9);
    assert_eq!(r.summary, "100 % → 25 % of the GPU: same speed within 2 %, 75 % less of the GPU reserved");
    assert_eq!(
        recommend_gpu(&reports, Dimension::GpuPercentage, Some(100), &Strategy::Speed).unwrap().gpu_percentage,
        Some(50),
        "ties: smaller"
    );
    let already = recommend_gpu(&[share(25, 50.0), share(50, 50.0)], Dimension::GpuPercentage, Some(25), &s).unwrap();
    assert_eq!(already.summary, "25 % of the GPU is already the right share for this strategy");
    assert_eq!(already.gpu_memory_mb, None);
    assert_eq!(recommend_gpu(&[oom(128)], Dimension::GpuPercentage, Some(100), &s), None, "nothing usable");
    // Larger shares that stop helping end the sweep, in share order.
    assert_eq!(
        verdict(&[share(10, 100.0), share(25, 50.0), share(50, 50.0), share(75, 50.0)], &s),
        Verdict::StopNoGain
    );
    assert_eq!(verdict(&[share(10, 100.0), share(25, 80.0), share(50, 50.0)], &s), Verdict::Continue);
}

fn gpu_memory(mb: u32, ms: f64) -> SizeReport {
    SizeReport { gpu_memory_mb: Some(mb), ..size(2048, ms) }
}

#[test]
fn gpu_memory_sizes_are_checked_capped_and_include_the_current_one() {
    assert_eq!(gpu_memory_sizes(None, 0, Some(8192)).unwrap(), [1024, 2048, 4096, 8192]);
    assert_eq!(gpu_memory_sizes(None, 3072, None).unwrap(), [1024, 2048, 3072, 4096, 8192, 16_384, 32_768]);
    assert_eq!(gpu_memory_sizes(Some(&[512, 256]), 0, Some(1024)).unwrap(), [256, 512]);
    for bad in [&[][..], &[0][..], &[300][..], &[2048][..], &[256; 17][..]] {
        let e = gpu_memory_sizes(Some(bad), 0, Some(1024)).unwrap_err();
        assert_eq!(e.field, "gpu_memory", "{bad:?}");
    }
    assert!(gpu_memory_sizes(Some(&[2048]), 0, Some(1024)).unwrap_err().message.contains("largest GPU (1024 MB)"));
}

#[test]
fn the_smallest_gpu_memory_that_is_not_slower_is_recommended() {
    // 1 GB is too little (the function fails there), 2 GB slower, 4 GB as fast as 8 GB.
    let mut small = gpu_memory(1024, 10.0);
    small.errors = 1;
    let reports = vec![small, gpu_memory(2048, 90.0), gpu_memory(4096, 50.0), gpu_memory(8192, 49.0)];
    let s = Strategy::SmallestNotSlower { tolerance: 0.05 };
    let r = recommend_gpu(&reports, Dimension::GpuMemory, Some(8192), &s).unwrap();
    assert_eq!((r.gpu_memory_mb, r.current_gpu_memory_mb, r.gpu_percentage), (Some(4096), Some(8192), None));
    assert_eq!(r.summary, "8192 MB → 4096 MB of GPU memory: same speed within 2 %, 50 % less of GPU memory reserved");
    let unset = recommend_gpu(&reports, Dimension::GpuMemory, None, &s).unwrap();
    assert_eq!(unset.gpu_saving, None);
    assert!(unset.summary.starts_with("4096 MB of GPU memory (the function set none"), "{}", unset.summary);
}
