//! The node's NVIDIA GPUs: what it has (NVML loaded at run time, else the driver's `/proc` files, else the
//! device nodes), what an instance holding some of them sees (a [`GpuPlan`]: device nodes, the driver's
//! libraries, environment), the MPS daemons that hold shares to their memory and compute, and how much GPU
//! memory an instance's processes hold (for its REPORT).
//!
//! Which GPUs an instance gets is the scheduler's question (`stoke_core::gpu`); this module only carries
//! the answer out.

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub mod mps;
pub mod nvml;

pub use nvml::Nvml;

/// One GPU of the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuDevice {
    /// NVML's index (as `nvidia-smi` numbers them).
    pub index: u32,
    /// `GPU-…`; empty where only the device nodes were read.
    pub uuid: String,
    /// The model (`NVIDIA H100 80GB HBM3`).
    pub name: String,
    /// Its memory, in MB; 0 where unknown (read without NVML).
    pub memory_mb: u64,
    /// The minor number of its `/dev/nvidiaN`.
    pub minor: u32,
}

/// Where the node's list of GPUs came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// NVIDIA's management library: every field known.
    Nvml,
    /// `/proc/driver/nvidia/gpus/*/information`: no memory sizes.
    Driver,
    /// `/dev/nvidiaN` alone: neither models nor memory sizes.
    DeviceNodes,
    /// No GPU found.
    None,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Nvml => "nvml",
            Source::Driver => "driver",
            Source::DeviceNodes => "device_nodes",
            Source::None => "none",
        }
    }
}

/// A character device node an instance with GPUs gets, bound from the host and allowed by its device
/// cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceNode {
    pub path: PathBuf,
    pub major: u32,
    pub minor: u32,
}

/// What the host has that GPU instances need: every NVIDIA device node, and the driver's user-space
/// libraries and tools (as the NVIDIA container toolkit finds them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostFiles {
    pub nodes: Vec<DeviceNode>,
    pub libraries: Vec<PathBuf>,
    pub tools: Vec<PathBuf>,
}

/// The driver libraries a CUDA program needs, by the name before `.so` (the container toolkit's `compute`
/// and `utility` sets).
const DRIVER_LIBRARIES: &[&str] = &[
    "libcuda",
    "libcudadebugger",
    "libnvidia-ml",
    "libnvidia-cfg",
    "libnvidia-ptxjitcompiler",
    "libnvidia-nvvm",
    "libnvidia-gpucomp",
    "libnvidia-allocator",
    "libnvidia-opencl",
    "libnvidia-fatbinaryloader",
    "libnvidia-compiler",
    "libnvidia-pkcs11",
    "libnvidia-pkcs11-openssl3",
];

/// Tools bound for functions that call them (as the toolkit's `utility` set).
const DRIVER_TOOLS: &[&str] = &["nvidia-smi", "nvidia-debugdump"];

/// The driver's libraries in `ldconfig -p`'s output: 64-bit entries whose name is one of the toolkit's,
/// each path once.
pub fn driver_libraries(ldconfig: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for line in ldconfig.lines() {
        let Some((left, path)) = line.split_once(" => ") else { continue };
        let mut words = left.split_whitespace();
        let (Some(name), Some(kind)) = (words.next(), words.next()) else { continue };
        if !kind.contains("x86-64") && !kind.contains("AArch64") {
            continue;
        }
        let stem = name.split(".so").next().unwrap_or_default();
        let path = PathBuf::from(path.trim());
        if DRIVER_LIBRARIES.contains(&stem) && !out.contains(&path) {
            out.push(path);
        }
    }
    out
}

/// `Model`, `GPU UUID` and `Device Minor` from one `/proc/driver/nvidia/gpus/<bus>/information` file.
pub fn parse_driver_information(text: &str) -> Option<(String, String, u32)> {
    let field = |key: &str| {
        text.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == key).then(|| v.trim().to_string())
        })
    };
    let minor = field("Device Minor")?.parse().ok()?;
    Some((field("Model").unwrap_or_else(|| "NVIDIA GPU".into()), field("GPU UUID").unwrap_or_default(), minor))
}

/// Minor numbers of the `nvidiaN` nodes among `names` (entries of `/dev`).
pub fn gpu_node_minors<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<u32> {
    let mut minors: Vec<u32> = names
        .into_iter()
        .filter_map(|n| n.strip_prefix("nvidia"))
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        .filter_map(|n| n.parse().ok())
        .collect();
    minors.sort_unstable();
    minors
}

/// One GPU an instance holds, and what of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantedDevice {
    pub device: GpuDevice,
    /// For a share: the GPU memory it may allocate, in MB, and its percent of the GPU's compute.
    pub share: Option<(u64, u32)>,
}

/// What an instance holding GPUs gets, for its sandbox to carry out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GpuPlan {
    /// The GPUs' indices (for sampling and listings).
    pub gpus: Vec<u32>,
    /// Device nodes bound into `/dev` and allowed by the device cgroup: the granted GPUs' and the driver's
    /// control nodes — no other GPU's.
    pub devices: Vec<DeviceNode>,
    /// Driver libraries and tools, bound read-only at the same path.
    pub files: Vec<PathBuf>,
    /// Directories bound writable at the same path (an MPS daemon's pipe directory).
    pub writable: Vec<PathBuf>,
    /// A host directory bound at `/dev/shm` (an MPS daemon's shared memory).
    pub shm: Option<PathBuf>,
    pub env: Vec<(String, String)>,
    /// A share enforced by an MPS daemon (false: a whole GPU, or nothing enforces the share).
    pub enforced: bool,
}

/// The driver's nodes every GPU instance needs beside its GPUs'.
const CONTROL_NODES: &[&str] = &["nvidiactl", "nvidia-uvm", "nvidia-uvm-tools"];

/// The plan for an instance holding `granted`, on a host with `files`; a share is enforced through `mps`
/// (its GPU's daemon directories) where there is one and the sandbox isolates devices (`isolated`: lean,
/// OCI). A sandbox that does not (`process`) gets the environment alone.
pub fn plan(
    granted: &[GrantedDevice],
    files: &HostFiles,
    mps: Option<&dyn Fn(u32) -> Option<mps::Dirs>>,
    isolated: bool,
) -> GpuPlan {
    let mut plan = GpuPlan { gpus: granted.iter().map(|g| g.device.index).collect(), ..GpuPlan::default() };
    let ids: Vec<String> = granted
        .iter()
        .map(|g| if g.device.uuid.is_empty() { g.device.index.to_string() } else { g.device.uuid.clone() })
        .collect();
    plan.env.push(("NVIDIA_VISIBLE_DEVICES".into(), ids.join(",")));
    plan.env.push(("CUDA_VISIBLE_DEVICES".into(), ids.join(",")));
    if !isolated {
        return plan;
    }
    for g in granted {
        let name = format!("nvidia{}", g.device.minor);
        if let Some(node) = files.nodes.iter().find(|n| n.path.file_name().is_some_and(|f| f == name.as_str())) {
            plan.devices.push(node.clone());
        }
    }
    for control in CONTROL_NODES {
        if let Some(node) = files.nodes.iter().find(|n| n.path.file_name().is_some_and(|f| f == *control)) {
            plan.devices.push(node.clone());
        }
    }
    plan.files.extend(files.libraries.iter().cloned());
    plan.files.extend(files.tools.iter().cloned());
    if let ([one], Some(mps)) = (granted, mps) {
        if let (Some((memory_mb, percentage)), Some(dirs)) = (one.share, mps(one.device.index)) {
            plan.writable.push(dirs.pipe.clone());
            plan.shm = Some(dirs.shm.clone());
            plan.env.push(("CUDA_MPS_PIPE_DIRECTORY".into(), dirs.pipe.display().to_string()));
            // The client sees only its GPU, as device 0 of the daemon (which sees only that GPU too).
            plan.env.push(("CUDA_MPS_PINNED_DEVICE_MEM_LIMIT".into(), format!("0={memory_mb}M")));
            plan.env.push(("CUDA_MPS_ACTIVE_THREAD_PERCENTAGE".into(), percentage.to_string()));
            plan.enforced = true;
        }
    }
    plan
}

/// The node's GPUs and what serving them takes: the library to ask about them, the host's driver files,
/// and the MPS daemons.
pub struct GpuHost {
    pub devices: Vec<GpuDevice>,
    pub source: Source,
    /// Why NVML is not in use, when it is not (for the start-up line).
    pub nvml_note: Option<String>,
    nvml: Option<Nvml>,
    pub files: HostFiles,
    mps: Option<Arc<mps::Daemons>>,
}

impl std::fmt::Debug for GpuHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuHost").field("devices", &self.devices).field("source", &self.source).finish_non_exhaustive()
    }
}

/// How the node looks for and serves its GPUs.
#[derive(Debug, Clone, Default)]
pub struct GpuSettings {
    /// The NVML library to load (default [`nvml::LIBRARY`] on the loader's path).
    pub nvml_library: Option<String>,
    /// Use at most this many GPUs (the first ones); `None`: all.
    pub limit: Option<u32>,
    /// Start one MPS daemon per GPU to enforce shares (when `nvidia-cuda-mps-control` is installed).
    pub mps: bool,
    /// Where MPS daemons keep their pipes, logs and shared memory.
    pub run_dir: PathBuf,
    /// Where the NVIDIA device nodes are (`None`: `/dev`).
    pub dev_dir: Option<PathBuf>,
}

impl GpuHost {
    /// Reads the node's GPUs: NVML first, then the driver's `/proc` files, then `/dev`. Never fails: a node
    /// without GPUs has an empty list.
    pub fn discover(settings: &GpuSettings) -> GpuHost {
        let library = settings.nvml_library.clone().unwrap_or_else(|| nvml::LIBRARY.to_string());
        let dev = settings.dev_dir.clone().unwrap_or_else(|| PathBuf::from("/dev"));
        let (mut devices, source, nvml, nvml_note) = match Nvml::open(&library) {
            Ok(n) => match n.devices() {
                Ok(d) => (d, Source::Nvml, Some(n), None),
                Err(e) => {
                    let (d, s) = Self::without_nvml(&dev);
                    (d, s, None, Some(e))
                }
            },
            Err(e) => {
                let (d, s) = Self::without_nvml(&dev);
                (d, s, None, Some(e))
            }
        };
        if let Some(limit) = settings.limit {
            devices.truncate(limit as usize);
        }
        let source = if devices.is_empty() { Source::None } else { source };
        let files = if devices.is_empty() { HostFiles::default() } else { read_host_files(&dev) };
        let mps = if settings.mps && !devices.is_empty() && source == Source::Nvml {
            mps::Daemons::start(&settings.run_dir, &devices)
        } else {
            None
        };
        GpuHost { devices, source, nvml_note, nvml, files, mps }
    }

    /// A host with these GPUs and files and neither NVML nor MPS: for tests of what the scheduler does.
    pub fn with_devices(devices: Vec<GpuDevice>, files: HostFiles) -> GpuHost {
        let source = if devices.is_empty() { Source::None } else { Source::DeviceNodes };
        GpuHost { devices, source, nvml_note: None, nvml: None, files, mps: None }
    }

    fn without_nvml(dev: &Path) -> (Vec<GpuDevice>, Source) {
        let mut from_driver = Vec::new();
        if let Ok(entries) = std::fs::read_dir("/proc/driver/nvidia/gpus") {
            for e in entries.flatten() {
                if let Some((name, uuid, minor)) = std::fs::read_to_string(e.path().join("information"))
                    .ok()
                    .as_deref()
                    .and_then(parse_driver_information)
                {
                    from_driver.push((minor, name, uuid));
                }
            }
        }
        if !from_driver.is_empty() {
            from_driver.sort();
            let devices = from_driver
                .into_iter()
                .enumerate()
                .map(|(i, (minor, name, uuid))| GpuDevice {
                    index: u32::try_from(i).unwrap_or(u32::MAX),
                    uuid,
                    name,
                    memory_mb: 0,
                    minor,
                })
                .collect();
            return (devices, Source::Driver);
        }
        let names: Vec<String> = std::fs::read_dir(dev)
            .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        let devices: Vec<GpuDevice> = gpu_node_minors(names.iter().map(String::as_str))
            .into_iter()
            .enumerate()
            .map(|(i, minor)| GpuDevice {
                index: u32::try_from(i).unwrap_or(u32::MAX),
                uuid: String::new(),
                name: "NVIDIA GPU".into(),
                memory_mb: 0,
                minor,
            })
            .collect();
        (devices, Source::DeviceNodes)
    }

    /// Whether shares are enforced (an MPS daemon runs for each GPU).
    pub fn enforces_shares(&self) -> bool {
        self.mps.is_some()
    }

    /// The plan for an instance holding `granted` (indices with, for a share, its memory and percentage).
    pub fn plan(&self, granted: &[(u32, Option<(u64, u32)>)], isolated: bool) -> GpuPlan {
        let granted: Vec<GrantedDevice> = granted
            .iter()
            .filter_map(|(index, share)| {
                let device = self.devices.iter().find(|d| d.index == *index)?.clone();
                Some(GrantedDevice { device, share: *share })
            })
            .collect();
        let daemons = self.mps.clone();
        let dirs = move |index: u32| daemons.as_ref().and_then(|d| d.dirs(index));
        plan(&granted, &self.files, Some(&dirs), isolated)
    }

    /// GPU memory, in bytes, that processes `pids` hold on GPU `index` now; `None` without NVML.
    pub fn memory_of(&self, index: u32, pids: &[u32]) -> Option<u64> {
        let procs = self.nvml.as_ref()?.processes(index).ok()?;
        Some(procs.iter().filter(|(pid, _)| pids.contains(pid)).map(|(_, bytes)| bytes).sum())
    }

    /// Whether NVML can be asked about memory in use.
    pub fn samples_memory(&self) -> bool {
        self.nvml.is_some()
    }
}

/// Every NVIDIA character device in `dev` (with its numbers), the driver libraries `ldconfig` knows, and
/// its tools on the usual paths.
pub fn read_host_files(dev: &Path) -> HostFiles {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut nodes = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dev) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.starts_with("nvidia") {
                continue;
            }
            let Ok(meta) = std::fs::metadata(e.path()) else { continue };
            if !meta.file_type().is_char_device() {
                continue;
            }
            let rdev = meta.rdev();
            nodes.push(DeviceNode {
                path: e.path(),
                major: nix::sys::stat::major(rdev).try_into().unwrap_or(u32::MAX),
                minor: nix::sys::stat::minor(rdev).try_into().unwrap_or(u32::MAX),
            });
        }
    }
    nodes.sort_by(|a, b| a.path.cmp(&b.path));
    let ldconfig = ["/sbin/ldconfig", "/usr/sbin/ldconfig", "ldconfig"]
        .iter()
        .find_map(|p| std::process::Command::new(p).arg("-p").output().ok())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let tools = DRIVER_TOOLS
        .iter()
        .flat_map(|t| ["/usr/bin", "/usr/local/bin", "/bin"].map(|d| Path::new(d).join(t)))
        .filter(|p| p.exists())
        .collect();
    HostFiles { nodes, libraries: driver_libraries(&ldconfig), tools }
}

#[cfg(test)]
mod tests;
