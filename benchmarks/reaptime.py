"""Run a command as a child subreaper; print wall, CPU (orphaned grandchildren included) and peak RSS."""
import ctypes, os, resource, subprocess, sys, time
libc = ctypes.CDLL("libc.so.6", use_errno=True)
libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
t = time.perf_counter()
proc = subprocess.Popen(sys.argv[1:])
code = proc.wait()
while True:  # reap orphans reparented to us
    try:
        os.wait()
    except ChildProcessError:
        break
u = resource.getrusage(resource.RUSAGE_CHILDREN)
print(f"REAPTIME {os.path.basename(sys.argv[1])} {' '.join(sys.argv[2:3])}: exit {code} wall {time.perf_counter()-t:.1f}s cpu {u.ru_utime+u.ru_stime:.1f}s (user {u.ru_utime:.1f}) maxrss {u.ru_maxrss/2**20:.2f}GiB", file=sys.stderr)
sys.exit(code)
