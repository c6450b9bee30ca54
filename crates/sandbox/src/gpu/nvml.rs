//! NVIDIA's management library (NVML), loaded at run time with `dlopen`: a node without the driver has no
//! `libnvidia-ml.so.1`, and starts normally. Nine entry points are all stoke reads — the GPUs (index, UUID,
//! model, memory, device minor) and each GPU's compute processes with the memory they hold — so they are
//! bound here by hand, from the C header's declarations, rather than through a binding crate.

use std::ffi::{c_char, c_int, c_uint, c_ulonglong, c_void, CStr, CString};
use std::sync::Mutex;

use super::GpuDevice;

type Device = *mut c_void;
type Ret = c_int;

const SUCCESS: Ret = 0;
const INSUFFICIENT_SIZE: Ret = 7;
/// `NVML_VALUE_NOT_AVAILABLE`: a process's memory the driver cannot tell (no permission, or under MPS on
/// older GPUs).
const NOT_AVAILABLE: c_ulonglong = c_ulonglong::MAX;

/// `nvmlMemory_t`.
#[repr(C)]
#[derive(Default)]
struct Memory {
    total: c_ulonglong,
    free: c_ulonglong,
    used: c_ulonglong,
}

/// `nvmlProcessInfo_v2_t` (also what `_v3` of the process queries fills).
#[repr(C)]
#[derive(Default, Clone, Copy)]
struct ProcessInfo {
    pid: c_uint,
    used_gpu_memory: c_ulonglong,
    gpu_instance_id: c_uint,
    compute_instance_id: c_uint,
}

struct Api {
    init: unsafe extern "C" fn() -> Ret,
    shutdown: unsafe extern "C" fn() -> Ret,
    count: unsafe extern "C" fn(*mut c_uint) -> Ret,
    by_index: unsafe extern "C" fn(c_uint, *mut Device) -> Ret,
    name: unsafe extern "C" fn(Device, *mut c_char, c_uint) -> Ret,
    uuid: unsafe extern "C" fn(Device, *mut c_char, c_uint) -> Ret,
    memory: unsafe extern "C" fn(Device, *mut Memory) -> Ret,
    minor: unsafe extern "C" fn(Device, *mut c_uint) -> Ret,
    processes: unsafe extern "C" fn(Device, *mut c_uint, *mut ProcessInfo) -> Ret,
}

/// A loaded, initialised NVML. Calls are serialised (NVML is thread-safe, but one lock keeps the handle's
/// life simple); each takes microseconds.
pub struct Nvml {
    handle: *mut c_void,
    api: Api,
    lock: Mutex<()>,
}

// SAFETY: the library handle and function pointers are process-wide and immutable once loaded; NVML's entry
// points are documented thread-safe, and every call here also holds `lock`.
unsafe impl Send for Nvml {}
// SAFETY: as above.
unsafe impl Sync for Nvml {}

impl std::fmt::Debug for Nvml {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Nvml")
    }
}

/// The library's name on the loader's path (the driver installs it; the CUDA toolkit is not needed).
pub const LIBRARY: &str = "libnvidia-ml.so.1";

impl Nvml {
    /// Loads `library` (a name on the loader's path or a file) and initialises NVML. The error says why not,
    /// in words for the node's start-up line.
    pub fn open(library: &str) -> Result<Nvml, String> {
        let name = CString::new(library).map_err(|_| format!("{library:?} is not a library path"))?;
        // SAFETY: `name` is a NUL-terminated string that outlives the call; dlopen has no other precondition.
        let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        if handle.is_null() {
            return Err(format!("{library} not loaded ({})", dl_error()));
        }
        let close = |e: String| {
            // SAFETY: `handle` came from a successful dlopen and nothing bound from it is kept.
            unsafe { libc::dlclose(handle) };
            Err(e)
        };
        let api = match Self::bind(handle) {
            Ok(api) => api,
            Err(e) => return close(e),
        };
        // SAFETY: nvmlInit_v2 takes no argument; calling it more than once is allowed (reference-counted).
        let rc = unsafe { (api.init)() };
        if rc != SUCCESS {
            return close(format!(
                "{library} loaded but nvmlInit failed (NVML error {rc}): is the NVIDIA driver loaded?"
            ));
        }
        // Only an initialised NVML is kept: dropping it shuts NVML down and closes the library.
        Ok(Nvml { handle, api, lock: Mutex::new(()) })
    }

    fn bind(handle: *mut c_void) -> Result<Api, String> {
        let get = |name: &str| -> Result<*mut c_void, String> { symbol(handle, name) };
        let processes = get("nvmlDeviceGetComputeRunningProcesses_v3")
            .or_else(|_| get("nvmlDeviceGetComputeRunningProcesses_v2"))?;
        // SAFETY: each symbol is cast to its signature in NVML's header (nvml.h, API version 11 and later),
        // which the names above (with their version suffixes) pin.
        unsafe {
            Ok(Api {
                init: std::mem::transmute::<*mut c_void, unsafe extern "C" fn() -> Ret>(get("nvmlInit_v2")?),
                shutdown: std::mem::transmute::<*mut c_void, unsafe extern "C" fn() -> Ret>(get("nvmlShutdown")?),
                count: std::mem::transmute::<*mut c_void, unsafe extern "C" fn(*mut c_uint) -> Ret>(get(
                    "nvmlDeviceGetCount_v2",
                )?),
                by_index: std::mem::transmute::<*mut c_void, unsafe extern "C" fn(c_uint, *mut Device) -> Ret>(get(
                    "nvmlDeviceGetHandleByIndex_v2",
                )?),
                name: std::mem::transmute::<*mut c_void, unsafe extern "C" fn(Device, *mut c_char, c_uint) -> Ret>(
                    get("nvmlDeviceGetName")?,
                ),
                uuid: std::mem::transmute::<*mut c_void, unsafe extern "C" fn(Device, *mut c_char, c_uint) -> Ret>(
                    get("nvmlDeviceGetUUID")?,
                ),
                memory: std::mem::transmute::<*mut c_void, unsafe extern "C" fn(Device, *mut Memory) -> Ret>(get(
                    "nvmlDeviceGetMemoryInfo",
                )?),
                minor: std::mem::transmute::<*mut c_void, unsafe extern "C" fn(Device, *mut c_uint) -> Ret>(get(
                    "nvmlDeviceGetMinorNumber",
                )?),
                processes: std::mem::transmute::<
                    *mut c_void,
                    unsafe extern "C" fn(Device, *mut c_uint, *mut ProcessInfo) -> Ret,
                >(processes),
            })
        }
    }

    fn device(&self, index: u32) -> Result<Device, String> {
        let mut device: Device = std::ptr::null_mut();
        // SAFETY: `device` is a valid out-pointer for the call's duration.
        let rc = unsafe { (self.api.by_index)(index, &mut device) };
        if rc != SUCCESS {
            return Err(format!("NVML error {rc} reading GPU {index}"));
        }
        Ok(device)
    }

    /// Every GPU the driver shows, in NVML's order.
    pub fn devices(&self) -> Result<Vec<GpuDevice>, String> {
        let _held = crate::lock(&self.lock);
        let mut count: c_uint = 0;
        // SAFETY: `count` is a valid out-pointer.
        let rc = unsafe { (self.api.count)(&mut count) };
        if rc != SUCCESS {
            return Err(format!("NVML error {rc} counting GPUs"));
        }
        let mut out = Vec::new();
        for index in 0..count {
            let device = self.device(index)?;
            let mut name = [0 as c_char; 96];
            let mut uuid = [0 as c_char; 96];
            let mut memory = Memory::default();
            let mut minor: c_uint = index;
            // SAFETY: each buffer is as long as the length passed with it, and NVML NUL-terminates what it
            // writes; the out-pointers are valid for the calls.
            let (n, u, m, mi) = unsafe {
                (
                    (self.api.name)(device, name.as_mut_ptr(), 96),
                    (self.api.uuid)(device, uuid.as_mut_ptr(), 96),
                    (self.api.memory)(device, &mut memory),
                    (self.api.minor)(device, &mut minor),
                )
            };
            let text = |rc: Ret, buf: &[c_char; 96]| {
                // SAFETY: the buffer was zeroed and NVML writes a NUL-terminated string shorter than it.
                (rc == SUCCESS).then(|| unsafe { CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().into_owned())
            };
            out.push(GpuDevice {
                index,
                uuid: text(u, &uuid).unwrap_or_default(),
                name: text(n, &name).unwrap_or_else(|| "NVIDIA GPU".to_string()),
                memory_mb: if m == SUCCESS { memory.total / (1024 * 1024) } else { 0 },
                minor: if mi == SUCCESS { minor } else { index },
            });
        }
        Ok(out)
    }

    /// The compute processes on GPU `index` and the GPU memory each holds, in bytes (host pids). A process
    /// whose memory the driver cannot tell is left out.
    pub fn processes(&self, index: u32) -> Result<Vec<(u32, u64)>, String> {
        let _held = crate::lock(&self.lock);
        let device = self.device(index)?;
        let mut infos = vec![ProcessInfo::default(); 64];
        loop {
            let mut count = c_uint::try_from(infos.len()).unwrap_or(c_uint::MAX);
            // SAFETY: `infos` holds `count` elements of the layout NVML fills; it writes at most `count`.
            let rc = unsafe { (self.api.processes)(device, &mut count, infos.as_mut_ptr()) };
            match rc {
                SUCCESS => {
                    infos.truncate(count as usize);
                    return Ok(infos
                        .iter()
                        .filter(|p| p.used_gpu_memory != NOT_AVAILABLE)
                        .map(|p| (p.pid, p.used_gpu_memory))
                        .collect());
                }
                INSUFFICIENT_SIZE if infos.len() < 65_536 => {
                    infos.resize((count as usize).max(infos.len() * 2), ProcessInfo::default())
                }
                rc => return Err(format!("NVML error {rc} listing GPU {index}'s processes")),
            }
        }
    }
}

impl Drop for Nvml {
    fn drop(&mut self) {
        // SAFETY: NVML was initialised in `open`; shutdown balances that init. The handle came from dlopen
        // and no pointer into the library outlives `self`.
        unsafe {
            (self.api.shutdown)();
            libc::dlclose(self.handle);
        }
    }
}

fn symbol(handle: *mut c_void, name: &str) -> Result<*mut c_void, String> {
    let c = CString::new(name).map_err(|_| format!("bad symbol name {name:?}"))?;
    // SAFETY: `handle` came from a successful dlopen and is still open; `c` is NUL-terminated.
    let p = unsafe { libc::dlsym(handle, c.as_ptr()) };
    if p.is_null() {
        Err(format!("the NVML library has no {name} (driver too old?)"))
    } else {
        Ok(p)
    }
}

fn dl_error() -> String {
    // SAFETY: dlerror returns NULL or a NUL-terminated string valid until the next dl* call on this thread.
    let e = unsafe { libc::dlerror() };
    if e.is_null() {
        "unknown error".to_string()
    } else {
        // SAFETY: non-NULL, NUL-terminated (above); copied before any other dl* call.
        unsafe { CStr::from_ptr(e) }.to_string_lossy().into_owned()
    }
}
