"""stoke's Python zygote (SOCK): imports the top-level packages of its layers once, then forks instances.

It runs as root of a user namespace of its own (the sandbox user is mapped to itself in it), under a filter
that allows what setting instances up needs, and keeps one instance *forked ahead*: set up in namespaces
and cgroups of its own, waiting for its function. Requests come on fd 3, a SOCK_SEQPACKET socket:

  {"prefork": slot, "cgroups", "uid", "gid"} with the instance's stdout and stderr as file
      descriptors: fork an instance for that slot. The child enters new mount and PID namespaces and forks
      again; that process, PID 1 of its namespace, joins its cgroups, binds its slot's code, scratch
      directory and /tmp (attached by the server later, they propagate in), mounts its own /proc, hides the
      other slots, and waits for its assignment;
  {"assign": slot, "env", "cwd"}: give it its function: it becomes the sandbox user (dropping every
      capability), installs the instance filter and runs stoke's Python runtime, whose code the zygote has
      compiled already;
  {"kill": slot}.

It reports {"ready": true} once its imports are done and {"exited": slot, "status": n} when an instance
ends. Standard library only; the syscalls go through ctypes.
"""
import ctypes
import gc
import glob
import importlib
import json
import os
import select
import signal
import socket
import sys

LIBC = ctypes.CDLL(None, use_errno=True)
ATTACH = "/.stoke-attach"
RUNTIME = "/var/runtime/stoke_python_bootstrap.py"
FILTER = "/var/runtime/stoke_seccomp.bpf"

CLONE_NEWNS = 0x00020000
CLONE_NEWPID = 0x20000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND, MS_REC, MS_SLAVE = 2, 4, 8, 4096, 16384, 1 << 19
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, PR_CAP_AMBIENT = 1, 4, 24, 38, 22, 47
PR_CAP_AMBIENT_CLEAR_ALL, SECCOMP_MODE_FILTER = 4, 2


def check(rc, what):
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, "%s: %s" % (what, os.strerror(err)))


def mount(source, target, fstype, flags, data=None):
    enc = lambda s: s.encode() if s is not None else None  # noqa: E731
    check(LIBC.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)),
          "mount %s on %s" % (source, target))


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install_filter(program):
    buf = ctypes.create_string_buffer(program, len(program))
    prog = SockFprog(len(program) // 8, ctypes.cast(buf, ctypes.c_void_p))
    check(LIBC.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    check(LIBC.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0), "seccomp")


def preimport():
    """Imports every top-level package and module the layers bring (what SOCK's zygotes hold)."""
    for d in ["/opt/python"] + sorted(glob.glob("/opt/python/lib/python3.*/site-packages")):
        if d not in sys.path:
            sys.path.append(d)
    names = []
    for entry in list(sys.path):
        if not entry.startswith("/opt/") or not os.path.isdir(entry):
            continue
        for name in sorted(os.listdir(entry)):
            path = os.path.join(entry, name)
            if name.startswith((".", "_")) or name.endswith((".dist-info", ".egg-info")) or name in ("bin", "lib"):
                continue
            if os.path.isdir(path) and os.path.exists(os.path.join(path, "__init__.py")):
                names.append(name)
            elif name.endswith(".py"):
                names.append(name[:-3])
    for name in names:
        try:
            importlib.import_module(name)
        except BaseException as e:  # a package that cannot be imported is skipped, not fatal
            print("cannot import %s from a layer: %s" % (name, e), file=sys.stderr, flush=True)
    # What the runtime itself needs.
    for name in ("http.client", "json", "logging", "traceback", "runpy", "importlib"):
        importlib.import_module(name)


def become_instance(req, out_fd, err_fd, assignment_fd, holder_alive, program, runtime_code):
    """PID 1 of the instance's namespaces: everything between the fork and the function's runtime."""
    slot = os.path.join(ATTACH, req["prefork"])
    LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    for controller in req["cgroups"]:
        with open(os.path.join(slot, "cg-" + controller, "cgroup.procs"), "w") as f:
            f.write("0")
    # Slaves: what the server attaches to the slot later still arrives; nothing mounted here leaves.
    mount(None, "/", None, MS_REC | MS_SLAVE)
    # The slot's mount points stay slaves of the server's: the code, scratch directory and /tmp it attaches
    # at the assignment appear here.
    mount(os.path.join(slot, "task"), "/var/task", None, MS_BIND)
    mount(os.path.join(slot, "scratch"), "/var/stoke-scratch", None, MS_BIND)
    mount(os.path.join(slot, "tmp"), "/tmp", None, MS_BIND)
    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    for hidden in ("kcore", "keys", "timer_list", "sched_debug", "latency_stats"):
        if os.path.exists("/proc/" + hidden):
            mount("/dev/null", "/proc/" + hidden, None, MS_BIND)
    mount("tmpfs", ATTACH, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k,mode=755")
    # Ready: wait for the function (one line of JSON).
    data = b""
    while not data.endswith(b"\n"):
        chunk = os.read(assignment_fd, 65536)
        if not chunk:
            os._exit(0)  # never assigned: the zygote or the server went away
        data += chunk
    os.close(assignment_fd)
    assignment = json.loads(data)
    # The sandbox user, with no capabilities left at all.
    cap = 0
    while LIBC.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) == 0:
        cap += 1
    LIBC.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    os.setgroups([])
    os.setresgid(req["gid"], req["gid"], req["gid"])
    os.setresuid(req["uid"], req["uid"], req["uid"])
    # Changing credentials resets these: dumpable as any process, and killed with its holder.
    LIBC.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)
    LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    try:
        if os.read(holder_alive, 1) == b"":
            os._exit(137)  # the holder died before: nothing would kill this instance with it
    except BlockingIOError:
        pass
    os.close(holder_alive)
    install_filter(program)
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(out_fd, 1)
    os.dup2(err_fd, 2)
    for fd in (null, out_fd, err_fd):
        if fd > 2:
            os.close(fd)
    sys.stdout = os.fdopen(1, "w", buffering=1)
    sys.stderr = os.fdopen(2, "w", buffering=1)
    env = assignment["env"]
    os.environ.clear()
    os.environ.update(env)
    layer_paths = [p for p in env.get("PYTHONPATH", "").split(":") if p]
    sys.path[:] = [os.path.dirname(RUNTIME)] + layer_paths + [p for p in sys.path[1:] if p not in layer_paths]
    os.chdir(assignment.get("cwd") or "/var/task")
    sys.argv = [RUNTIME]
    exec(runtime_code, {"__name__": "__main__", "__file__": RUNTIME, "__builtins__": __builtins__})
    os._exit(0)


def prefork(req, fds, program, runtime_code, control):
    """Forks the instance of `req`'s slot: a holder in new mount and PID namespaces, and its PID 1, which
    sets itself up and waits for its assignment on a pipe. Returns (holder pid, write end of that pipe)."""
    assign_r, assign_w = os.pipe()
    pid = os.fork()
    if pid:
        os.close(assign_r)
        return pid, assign_w
    code = 127
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        control.detach()
        # Nothing of the zygote's stays open in the instance: its socket, other instances' pipes.
        keep = set(fds) | {0, 1, 2, assign_r}
        for name in os.listdir("/proc/self/fd"):
            if int(name) not in keep:
                try:
                    os.close(int(name))
                except OSError:
                    pass
        LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        check(LIBC.unshare(CLONE_NEWNS | CLONE_NEWPID), "unshare")
        # Open in the holder for as long as it lives: the instance's way to tell it is still there.
        alive_r, alive_w = os.pipe()
        os.set_blocking(alive_r, False)
        init = os.fork()
        if init == 0:
            try:
                os.close(alive_w)
                become_instance(req, fds[0], fds[1], assign_r, alive_r, program, runtime_code)
            except BaseException as e:
                os.write(fds[1], ("stoke: cannot start the instance from its zygote: %s\n" % e).encode())
            os._exit(127)
        for fd in fds + [assign_r, alive_r]:
            os.close(fd)
        _, status = os.waitpid(init, 0)
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            signal.signal(sig, signal.SIG_DFL)
            os.kill(os.getpid(), sig)
        code = os.waitstatus_to_exitcode(status)
    finally:
        os._exit(code if code >= 0 else 127)


def main():
    program = open(FILTER, "rb").read()
    with open(RUNTIME) as f:
        runtime_code = compile(f.read(), RUNTIME, "exec")
    control = socket.socket(fileno=3)
    preimport()
    gc.freeze()  # what is imported now stays shared with every instance, not copied by the collector
    control.send(json.dumps({"ready": True}).encode())
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    holders = {}  # pid of each instance's namespace holder → slot
    slots = {}  # slot → (holder pid, write end of its assignment pipe, or None once assigned)
    while True:
        try:
            ready, _, _ = select.select([control, wake_r], [], [])
        except InterruptedError:
            continue
        if wake_r in ready:
            os.read(wake_r, 4096)
            while True:
                try:
                    pid, status = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if pid == 0:
                    break
                slot = holders.pop(pid, None)
                if slot is not None:
                    _, pipe = slots.pop(slot, (None, None))
                    if pipe is not None:
                        os.close(pipe)
                    control.send(json.dumps({"exited": slot, "status": status}).encode())
        if control in ready:
            try:
                data, fds, _, _ = socket.recv_fds(control, 65536, 4)
            except InterruptedError:
                continue
            if not data:
                return  # the server is gone
            req = json.loads(data)
            if "kill" in req:
                pid, _ = slots.get(req["kill"], (None, None))
                if pid:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            elif "assign" in req:
                pid, pipe = slots.get(req["assign"], (None, None))
                if pipe is not None:
                    os.write(pipe, (json.dumps({"env": req["env"], "cwd": req.get("cwd")}) + "\n").encode())
                    os.close(pipe)
                    slots[req["assign"]] = (pid, None)
            elif "prefork" in req:
                try:
                    pid, pipe = prefork(req, fds, program, runtime_code, control)
                    holders[pid] = req["prefork"]
                    slots[req["prefork"]] = (pid, pipe)
                except OSError as e:
                    print("cannot fork an instance: %s" % e, file=sys.stderr, flush=True)
                    control.send(json.dumps({"exited": req["prefork"], "status": 127 << 8}).encode())
            for fd in fds:
                os.close(fd)


if __name__ == "__main__":
    main()
