//! This program's image: how a local worker is started from the very
//! executable its parent runs, and the build id that tells one build of a
//! program from another.

use std::ffi::OsStr;
use std::hash::Hasher;
use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

/// The kernel's name for the executable a process runs. Opened by the
/// forked child just before it executes it, it names the image the parent
/// runs (which the child shares), even after the file at the program's
/// path was replaced or deleted.
const OWN_IMAGE: &str = "/proc/self/exe";

/// A command that runs this program's own image, with `argv0` (the
/// program's path, as `current_exe` gives it) as its `argv[0]`, as a
/// command of that path would have. Without `/proc` (a chroot without it
/// mounted), the path itself, whatever it holds by then.
pub(crate) fn own_image_command(argv0: &Path) -> Command {
    if Path::new(OWN_IMAGE).exists() {
        use std::os::unix::process::CommandExt;
        let mut command = Command::new(OWN_IMAGE);
        command.arg0(argv0);
        command
    } else {
        tracing::warn!(
            "{OWN_IMAGE} is missing: workers start from {}, whatever it holds now",
            argv0.display()
        );
        Command::new(argv0)
    }
}

/// The file name of the executable this process runs ("pool-worker"),
/// telling a different build of the same program from another program.
pub(crate) fn program_name() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| {
        let exe = std::env::current_exe().unwrap_or_default();
        let name = exe.file_name().unwrap_or(OsStr::new("")).to_string_lossy();
        // The kernel's suffix for an image whose file was replaced.
        name.trim_end_matches(" (deleted)").to_string()
    })
}

/// What identifies this build of the program: `gnu:` and the GNU build-id
/// note the linker wrote (a hash of the linked output), or, for a program
/// linked without one, `file:` and a hash of the executable's bytes, read
/// once. Empty if neither can be had: such a build matches none.
pub(crate) fn build_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| match gnu_build_id() {
        Some(id) => format!("gnu:{}", hex(&id)),
        None => file_hash().map_or_else(String::new, |hash| format!("file:{hash:016x}")),
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// A hash of the executable's bytes (SipHash with std's fixed keys: not a
/// defence against forgery, which the authkey is, but against mistakes).
fn file_hash() -> Option<u64> {
    let mut file = std::fs::File::open(OWN_IMAGE).ok()?;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    let mut buffer = vec![0; 1 << 16];
    loop {
        match file.read(&mut buffer) {
            Ok(0) => return Some(hasher.finish()),
            Ok(read) => hasher.write(&buffer[..read]),
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
}

/// The GNU build-id note of the executable, read from its program headers
/// in memory (no file is read): the first object `dl_iterate_phdr` reports
/// is the executable itself.
fn gnu_build_id() -> Option<Vec<u8>> {
    unsafe extern "C" fn first_object(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        found: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: `found` is the `Option<Vec<u8>>` that `gnu_build_id`
        // passed, alive and not otherwise borrowed during the call; `info`
        // points to a valid `dl_phdr_info` for the duration of the call.
        let (found, info) = unsafe { (&mut *found.cast::<Option<Vec<u8>>>(), &*info) };
        if info.dlpi_phdr.is_null() {
            return 1;
        }
        // SAFETY: the loader's table of `dlpi_phnum` program headers.
        let headers = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum.into()) };
        for header in headers.iter().filter(|h| h.p_type == libc::PT_NOTE) {
            let start = (info.dlpi_addr as usize).wrapping_add(header.p_vaddr as usize);
            // SAFETY: a PT_NOTE segment lies within a loaded, readable
            // segment of the object, mapped at its load address plus its
            // virtual address for as long as the object is loaded (the
            // executable: for ever), `p_memsz` bytes long.
            let notes =
                unsafe { std::slice::from_raw_parts(start as *const u8, header.p_memsz as usize) };
            if let Some(id) = find_build_id(notes) {
                *found = Some(id.to_vec());
                break;
            }
        }
        // Non-zero: stop after the executable.
        1
    }
    let mut found: Option<Vec<u8>> = None;
    // SAFETY: the callback only reads what the loader hands it and writes
    // `found`, which outlives the call.
    unsafe {
        libc::dl_iterate_phdr(
            Some(first_object),
            (&mut found as *mut Option<Vec<u8>>).cast(),
        );
    }
    found
}

/// The description of the `NT_GNU_BUILD_ID` note of owner "GNU" among
/// `notes` (ELF notes: name size, description size and type as native
/// `u32`s, then the name and the description, each padded to 4 bytes).
fn find_build_id(mut notes: &[u8]) -> Option<&[u8]> {
    const NT_GNU_BUILD_ID: u32 = 3;
    fn padded(len: usize) -> Option<usize> {
        len.checked_add(3).map(|len| len & !3)
    }
    while notes.len() >= 12 {
        let word = |at: usize| u32::from_ne_bytes(notes[at..at + 4].try_into().unwrap_or_default());
        let (name_len, desc_len, kind) = (word(0) as usize, word(4) as usize, word(8));
        let desc_at = 12usize.checked_add(padded(name_len)?)?;
        let next = desc_at.checked_add(padded(desc_len)?)?;
        let name = notes.get(12..12 + name_len)?;
        let desc = notes.get(desc_at..desc_at.checked_add(desc_len)?)?;
        if kind == NT_GNU_BUILD_ID && name == b"GNU\0" {
            return Some(desc);
        }
        notes = notes.get(next..).unwrap_or_default();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(name: &[u8], kind: u32, desc: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend((name.len() as u32).to_ne_bytes());
        out.extend((desc.len() as u32).to_ne_bytes());
        out.extend(kind.to_ne_bytes());
        for part in [name, desc] {
            out.extend(part);
            out.resize(out.len().next_multiple_of(4), 0);
        }
        out
    }

    #[test]
    fn the_build_id_note_is_found_among_others_and_garbage_is_none() {
        let mut notes = note(b"GNU\0", 1, &[0; 16]);
        notes.extend(note(b"GNU\0", 3, &[0xab, 0xcd, 0xef]));
        assert_eq!(find_build_id(&notes), Some(&[0xab, 0xcd, 0xef][..]));
        assert_eq!(find_build_id(&note(b"Go\0\0", 3, b"id")), None);
        for cut in 0..notes.len() - 4 {
            assert_ne!(find_build_id(&notes[..cut]), Some(&[0xab, 0xcd, 0xef][..]));
        }
        assert_eq!(find_build_id(&[0xff; 40]), None);
    }

    #[test]
    fn this_test_binary_has_a_build_id_as_readelf_shows_it() {
        let began = std::time::Instant::now();
        let note = gnu_build_id();
        eprintln!("reading the build-id note took {:?}", began.elapsed());
        assert!(note.is_some());
        let id = build_id();
        assert!(id.starts_with("gnu:") && id.len() > 8, "{id}");
        let exe = std::env::current_exe().unwrap();
        let Ok(out) = Command::new("readelf").arg("-n").arg(exe).output() else {
            eprintln!("skipped the comparison with readelf: it is not installed");
            return;
        };
        let notes = String::from_utf8_lossy(&out.stdout);
        assert!(notes.contains(&id["gnu:".len()..]), "{id} not in:\n{notes}");
    }
}
