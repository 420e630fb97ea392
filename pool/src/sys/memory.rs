//! Memory: a process's resident size, the kernel's limit on its data, and
//! the counts of the kernel's OOM killer.
//!
//! Everything here reads files under `/proc` and `/sys/fs/cgroup` or makes
//! one system call; none of it needs privileges. Where a file is missing
//! (no memory cgroup, an old kernel) the caller gets `None` and says what
//! it could not tell.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// Reads this process's resident set size, from a `/proc/self/statm`
/// kept open: each reading is one `pread` (about a microsecond), cheap
/// enough to take after every input.
pub(crate) struct ResidentGauge {
    statm: File,
    page: u64,
}

impl ResidentGauge {
    pub(crate) fn open() -> io::Result<ResidentGauge> {
        // SAFETY: sysconf only reads a configuration value; it has no
        // preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        Ok(ResidentGauge {
            statm: File::open("/proc/self/statm")?,
            page: u64::try_from(page).unwrap_or(4096),
        })
    }

    /// Resident bytes now: `statm`'s second field, in pages. Reading at
    /// offset 0 makes the kernel render the file afresh.
    pub(crate) fn resident_bytes(&self) -> io::Result<u64> {
        let mut buf = [0u8; 128];
        let len = self.statm.read_at(&mut buf, 0)?;
        let text = std::str::from_utf8(&buf[..len]).unwrap_or("");
        text.split_ascii_whitespace()
            .nth(1)
            .and_then(|pages| pages.parse::<u64>().ok())
            .map(|pages| pages * self.page)
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidData, "unreadable /proc/self/statm")
            })
    }
}

/// Limits this process's data (`RLIMIT_DATA`: its heap and every private
/// writable mapping, which is where allocations live; not the program's
/// code, shared memory or file mappings) to `bytes`: an allocation that
/// would cross it fails with `ENOMEM`. Only the soft limit is lowered, and
/// never raised above the hard one.
pub(crate) fn limit_data(bytes: u64) -> io::Result<()> {
    let current = getrlimit(Resource::Data);
    let bytes = current.maximum.map_or(bytes, |max| bytes.min(max));
    setrlimit(
        Resource::Data,
        Rlimit {
            current: Some(bytes),
            maximum: current.maximum,
        },
    )
    .map_err(io::Error::from)
}

/// Where the count of the kernel's OOM kills that could have hit this
/// process's children is read.
#[derive(Debug, Clone)]
pub(crate) struct OomCounter {
    file: PathBuf,
    /// The `key value` line that holds the count.
    key: &'static str,
    /// What the count covers, for messages.
    pub(crate) scope: String,
}

impl OomCounter {
    /// Every counter this process can read, the most specific first: its
    /// cgroup v2's `memory.events` (`oom_kill`), its cgroup v1 memory
    /// controller's `memory.oom_control` (`oom_kill`, kernel 4.13 and
    /// later; it counts that cgroup's kills, not its children's), and the
    /// system's `/proc/vmstat` (`oom_kill`).
    pub(crate) fn all() -> Vec<OomCounter> {
        let cgroups = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let candidates = [
            cgroup_dir(&cgroups, &mounts, CgroupVersion::V2)
                .map(|dir| (dir.join("memory.events"), "memory cgroup (v2)")),
            cgroup_dir(&cgroups, &mounts, CgroupVersion::V1)
                .map(|dir| (dir.join("memory.oom_control"), "memory cgroup (v1)")),
            Some((PathBuf::from("/proc/vmstat"), "system")),
        ];
        candidates
            .into_iter()
            .flatten()
            .map(|(file, what)| OomCounter {
                scope: format!("{what}, {}", file.display()),
                file,
                key: "oom_kill",
            })
            .filter(|counter| counter.read().is_some())
            .collect()
    }

    /// The count now, if the file is still readable.
    pub(crate) fn read(&self) -> Option<u64> {
        let text = std::fs::read_to_string(&self.file).ok()?;
        text.lines().find_map(|line| {
            let (key, value) = line.split_once(' ')?;
            (key == self.key).then(|| value.trim().parse().ok())?
        })
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum CgroupVersion {
    V1,
    V2,
}

/// This process's cgroup directory for `version` (v1: the memory
/// controller's), from `/proc/self/cgroup` and `/proc/self/mountinfo`.
fn cgroup_dir(cgroups: &str, mountinfo: &str, version: CgroupVersion) -> Option<PathBuf> {
    let path = cgroups.lines().find_map(|line| {
        let mut fields = line.splitn(3, ':');
        let (hierarchy, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        let wanted = match version {
            CgroupVersion::V2 => hierarchy == "0" && controllers.is_empty(),
            CgroupVersion::V1 => controllers.split(',').any(|c| c == "memory"),
        };
        wanted.then_some(path)
    })?;
    mountinfo.lines().find_map(|line| {
        // "id parent major:minor root mount-point options ... - fstype source super-options"
        let (before, after) = line.split_once(" - ")?;
        let fields: Vec<&str> = before.split(' ').collect();
        let (root, mount_point) = (*fields.get(3)?, *fields.get(4)?);
        let mut after = after.split(' ');
        let (fstype, super_options) = (after.next()?, after.nth(1).unwrap_or(""));
        let matches = match version {
            CgroupVersion::V2 => fstype == "cgroup2",
            CgroupVersion::V1 => {
                fstype == "cgroup" && super_options.split(',').any(|o| o == "memory")
            }
        };
        if !matches {
            return None;
        }
        let inside = path.strip_prefix(root).unwrap_or(path);
        let dir = Path::new(mount_point).join(inside.trim_start_matches('/'));
        dir.is_dir().then_some(dir)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resident_size_follows_memory_touched() {
        // The gauge reads the whole process, in which other tests run and
        // free memory at the same time: a reading they shrank is taken
        // again (a few times), never a smaller growth accepted.
        let gauge = ResidentGauge::open().unwrap();
        let mut seen = Vec::new();
        let grew = (0..5).any(|_| {
            let before = gauge.resident_bytes().unwrap();
            let block = vec![1u8; 64 << 20];
            let during = gauge.resident_bytes().unwrap();
            drop(block);
            seen.push((before, during));
            during >= before + (60 << 20)
        });
        assert!(grew, "(before, during) bytes resident: {seen:?}");
    }

    #[test]
    fn cgroup_directories_come_from_proc() {
        let cgroups = "4:memory:/jobs/7\n0::/\n";
        let mountinfo = "31 25 0:27 / /tmp rw - cgroup2 cgroup2 rw\n";
        // Only directories that exist are returned.
        assert_eq!(
            cgroup_dir(cgroups, mountinfo, CgroupVersion::V2),
            Some(PathBuf::from("/tmp"))
        );
        assert_eq!(cgroup_dir(cgroups, mountinfo, CgroupVersion::V1), None);
        let v1 = "40 25 0:26 / /tmp rw - cgroup cgroup rw,memory\n";
        assert_eq!(
            cgroup_dir("4:memory:/\n", v1, CgroupVersion::V1),
            Some(PathBuf::from("/tmp"))
        );
        assert_eq!(cgroup_dir("4:cpu:/\n", v1, CgroupVersion::V1), None);
    }

    #[test]
    fn some_oom_count_is_readable() {
        // /proc/vmstat has had `oom_kill` since Linux 4.13.
        let counters = OomCounter::all();
        assert!(
            counters.iter().any(|c| c.scope.starts_with("system")),
            "{counters:?}"
        );
    }
}
