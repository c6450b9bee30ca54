use super::*;

const LDCONFIG: &str = "\
1234 libs found in cache `/etc/ld.so.cache'
\tlibz.so.1 (libc6,x86-64) => /lib/x86_64-linux-gnu/libz.so.1
\tlibnvidia-ml.so.1 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1
\tlibnvidia-ml.so (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libnvidia-ml.so
\tlibnvidia-ml.so.1 (libc6) => /usr/lib/i386-linux-gnu/libnvidia-ml.so.1
\tlibcuda.so.1 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libcuda.so.1
\tlibcuda.so.1 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libcuda.so.1
\tlibcudart.so.12 (libc6,x86-64) => /usr/local/cuda/lib64/libcudart.so.12
\tlibnvidia-ptxjitcompiler.so.1 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libnvidia-ptxjitcompiler.so.1
\tlibnvidia-egl-wayland.so.1 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libnvidia-egl-wayland.so.1
";

fn node(name: &str, major: u32, minor: u32) -> DeviceNode {
    DeviceNode { path: Path::new("/dev").join(name), major, minor }
}

fn host() -> HostFiles {
    HostFiles {
        nodes: vec![
            node("nvidia-uvm", 508, 0),
            node("nvidia-uvm-tools", 508, 1),
            node("nvidia0", 195, 0),
            node("nvidia1", 195, 1),
            node("nvidia3", 195, 3),
            node("nvidiactl", 195, 255),
            node("nvidia-modeset", 195, 254),
        ],
        libraries: driver_libraries(LDCONFIG),
        tools: vec!["/usr/bin/nvidia-smi".into()],
    }
}

fn gpu(index: u32, minor: u32) -> GpuDevice {
    GpuDevice { index, uuid: format!("GPU-{index:04}"), name: "NVIDIA H100".into(), memory_mb: 81_559, minor }
}

fn env(plan: &GpuPlan, key: &str) -> Option<String> {
    plan.env.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
}

#[test]
fn finds_the_driver_libraries_in_ldconfigs_output() {
    let libs = driver_libraries(LDCONFIG);
    let names: Vec<_> = libs.iter().map(|p| p.display().to_string()).collect();
    assert_eq!(
        names,
        [
            "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1",
            "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so",
            "/usr/lib/x86_64-linux-gnu/libcuda.so.1",
            "/usr/lib/x86_64-linux-gnu/libnvidia-ptxjitcompiler.so.1",
        ],
        "64-bit only, each once, the CUDA runtime (the function's own) and graphics libraries left out"
    );
    assert!(driver_libraries("").is_empty());
}

#[test]
fn reads_the_drivers_information_file_and_device_nodes() {
    let info = "Model: \t\t NVIDIA H100 80GB HBM3\nIRQ:   \t\t 35\nGPU UUID: \t GPU-8e2f\nDevice Minor: \t 3\n";
    assert_eq!(parse_driver_information(info), Some(("NVIDIA H100 80GB HBM3".into(), "GPU-8e2f".into(), 3)));
    assert_eq!(parse_driver_information("Model: x\n"), None, "no minor, no device");
    let names = ["null", "nvidia1", "nvidiactl", "nvidia-uvm", "nvidia0", "nvidia-caps", "nvidia10"];
    assert_eq!(gpu_node_minors(names), [0, 1, 10]);
}

#[test]
fn a_whole_gpu_gets_its_own_node_the_control_nodes_and_the_libraries_only() {
    let plan = plan(&[GrantedDevice { device: gpu(1, 1), share: None }], &host(), None, true);
    let devices: Vec<_> = plan.devices.iter().map(|d| (d.path.display().to_string(), d.major, d.minor)).collect();
    assert_eq!(
        devices,
        [
            ("/dev/nvidia1".to_string(), 195, 1),
            ("/dev/nvidiactl".to_string(), 195, 255),
            ("/dev/nvidia-uvm".to_string(), 508, 0),
            ("/dev/nvidia-uvm-tools".to_string(), 508, 1),
        ]
    );
    assert!(!plan.devices.iter().any(|d| d.path.ends_with("nvidia0") || d.path.ends_with("nvidia3")));
    assert_eq!(plan.files.len(), 5, "four libraries and nvidia-smi");
    assert_eq!(env(&plan, "NVIDIA_VISIBLE_DEVICES").as_deref(), Some("GPU-0001"));
    assert_eq!(env(&plan, "CUDA_VISIBLE_DEVICES").as_deref(), Some("GPU-0001"));
    assert_eq!(env(&plan, "CUDA_MPS_PIPE_DIRECTORY"), None, "a whole GPU is used directly");
    assert!(!plan.enforced && plan.writable.is_empty() && plan.shm.is_none());
    assert_eq!(plan.gpus, [1]);
}

#[test]
fn several_whole_gpus_are_listed_in_order() {
    let granted = [GrantedDevice { device: gpu(0, 0), share: None }, GrantedDevice { device: gpu(2, 3), share: None }];
    let plan = plan(&granted, &host(), None, true);
    assert_eq!(env(&plan, "CUDA_VISIBLE_DEVICES").as_deref(), Some("GPU-0000,GPU-0002"));
    let gpu_nodes: Vec<_> = plan.devices.iter().filter(|d| d.major == 195 && d.minor < 200).map(|d| d.minor).collect();
    assert_eq!(gpu_nodes, [0, 3], "GPU 2's node is nvidia3 (its minor)");
}

#[test]
fn a_share_is_an_mps_client_with_its_limits() {
    let dirs = |index: u32| Some(mps::Dirs::of(Path::new("/run/stoke"), index));
    let granted = [GrantedDevice { device: gpu(0, 0), share: Some((4096, 50)) }];
    let plan = plan(&granted, &host(), Some(&dirs), true);
    assert!(plan.enforced);
    assert_eq!(env(&plan, "CUDA_MPS_PIPE_DIRECTORY").as_deref(), Some("/run/stoke/mps/0/pipe"));
    assert_eq!(env(&plan, "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT").as_deref(), Some("0=4096M"));
    assert_eq!(env(&plan, "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE").as_deref(), Some("50"));
    assert_eq!(plan.writable, [PathBuf::from("/run/stoke/mps/0/pipe")]);
    assert_eq!(plan.shm.as_deref(), Some(Path::new("/run/stoke/mps/0/shm")));
    // Without a daemon the share is placed but not enforced, and the plan says so.
    let unenforced = super::plan(&granted, &host(), None, true);
    assert!(!unenforced.enforced && env(&unenforced, "CUDA_MPS_PIPE_DIRECTORY").is_none());
}

#[test]
fn a_sandbox_without_device_isolation_gets_the_environment_only() {
    let dirs = |index: u32| Some(mps::Dirs::of(Path::new("/run/stoke"), index));
    let granted = [GrantedDevice { device: gpu(0, 0), share: Some((4096, 50)) }];
    let plan = plan(&granted, &host(), Some(&dirs), false);
    assert!(plan.devices.is_empty() && plan.files.is_empty() && !plan.enforced);
    assert_eq!(env(&plan, "CUDA_VISIBLE_DEVICES").as_deref(), Some("GPU-0000"));
    let unknown = GpuDevice { uuid: String::new(), ..gpu(4, 4) };
    let plan = super::plan(&[GrantedDevice { device: unknown, share: None }], &host(), None, false);
    assert_eq!(env(&plan, "CUDA_VISIBLE_DEVICES").as_deref(), Some("4"), "no UUID known: the index");
}

#[test]
fn nvml_that_is_not_there_is_an_explained_absence() {
    let e = Nvml::open("/nonexistent/libnvidia-ml.so.1").unwrap_err();
    assert!(e.contains("not loaded"), "{e}");
    let host = GpuHost::discover(&GpuSettings {
        nvml_library: Some("/nonexistent/libnvidia-ml.so.1".into()),
        limit: Some(0),
        mps: true,
        run_dir: std::env::temp_dir(),
        dev_dir: None,
    });
    assert!(host.devices.is_empty());
    assert_eq!(host.source, Source::None);
    assert!(!host.enforces_shares() && !host.samples_memory());
    assert!(host.nvml_note.is_some());
}
