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
    if workers_run_own_image() {
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

/// Whether `other` names this very build. An empty id (a program with
/// neither a build-id note nor a readable file) matches nothing, not even
/// another empty one.
pub(crate) fn is_this_build(other: &str) -> bool {
    let own = build_id();
    !own.is_empty() && other == own
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
/// in memory (no file is read).
fn gnu_build_id() -> Option<Vec<u8>> {
    let image = loaded_image()?;
    image
        .notes
        .iter()
        .find_map(|notes| find_build_id(notes).map(<[u8]>::to_vec))
}

/// What this process's executable looks like in memory: where the loader
/// put it, its notes, and where its code lies.
struct LoadedImage {
    /// The load bias: what the loader added to every address the file
    /// names (0 for an executable that is not position-independent).
    base: usize,
    notes: Vec<&'static [u8]>,
    /// The executable segments, as address ranges of this process.
    code: Vec<std::ops::Range<usize>>,
}

impl LoadedImage {
    /// Whether `address` lies in one of the executable's code segments.
    fn in_code(&self, address: usize) -> bool {
        self.code.iter().any(|code| code.contains(&address))
    }
}

/// This process's executable as loaded, read once from its program
/// headers: the first object `dl_iterate_phdr` reports is the executable
/// itself, which stays mapped for as long as the process runs.
fn loaded_image() -> Option<&'static LoadedImage> {
    unsafe extern "C" fn first_object(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        found: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: `found` is the `Option<LoadedImage>` that `loaded_image`
        // passed, alive and not otherwise borrowed during the call; `info`
        // points to a valid `dl_phdr_info` for the duration of the call.
        let (found, info) = unsafe { (&mut *found.cast::<Option<LoadedImage>>(), &*info) };
        if info.dlpi_phdr.is_null() {
            return 1;
        }
        // SAFETY: the loader's table of `dlpi_phnum` program headers.
        let headers = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum.into()) };
        let base = info.dlpi_addr as usize;
        let mut image = LoadedImage {
            base,
            notes: Vec::new(),
            code: Vec::new(),
        };
        for header in headers {
            let start = base.wrapping_add(header.p_vaddr as usize);
            let len = header.p_memsz as usize;
            if header.p_type == libc::PT_NOTE {
                // SAFETY: a PT_NOTE segment lies within a loaded, readable
                // segment of the object, mapped at its load address plus
                // its virtual address for as long as the object is loaded
                // (the executable: for ever), `p_memsz` bytes long.
                image
                    .notes
                    .push(unsafe { std::slice::from_raw_parts(start as *const u8, len) });
            } else if header.p_type == libc::PT_LOAD && header.p_flags & libc::PF_X != 0 {
                image.code.push(start..start.saturating_add(len));
            }
        }
        *found = Some(image);
        // Non-zero: stop after the executable.
        1
    }
    static IMAGE: OnceLock<Option<LoadedImage>> = OnceLock::new();
    IMAGE
        .get_or_init(|| {
            let mut found: Option<LoadedImage> = None;
            // SAFETY: the callback only reads what the loader hands it and
            // writes `found`, which outlives the call.
            unsafe {
                libc::dl_iterate_phdr(
                    Some(first_object),
                    (&mut found as *mut Option<LoadedImage>).cast(),
                );
            }
            found
        })
        .as_ref()
}

/// Where `address` lies in this program's executable code, as an offset
/// from where the image was loaded: the same in every process that runs
/// this image, wherever each loaded it (ASLR). `None` for an address
/// outside the executable's code (in a shared library, or not code).
pub(crate) fn code_offset(address: usize) -> Option<u64> {
    let image = loaded_image()?;
    image
        .in_code(address)
        .then(|| address.wrapping_sub(image.base) as u64)
}

/// The address in this process of the code at `offset` (from
/// [`code_offset`] in a process running this very image), if it lies in
/// the executable's code: an offset that points anywhere else is `None`.
pub(crate) fn code_address(offset: u64) -> Option<usize> {
    let image = loaded_image()?;
    let address = image.base.wrapping_add(usize::try_from(offset).ok()?);
    image.in_code(address).then_some(address)
}

/// Whether local workers start from this very image (`/proc/self/exe`),
/// rather than from whatever the program's path holds when they start.
pub(crate) fn workers_run_own_image() -> bool {
    Path::new(OWN_IMAGE).exists()
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
    fn functions_become_offsets_and_back_but_data_does_not() {
        fn probe() {}
        let address = probe as fn() as usize;
        let offset = code_offset(address).expect("a function is in the code");
        assert_eq!(code_address(offset), Some(address));
        static DATA: u8 = 0;
        assert_eq!(code_offset(&DATA as *const u8 as usize), None);
        let data_offset = (&DATA as *const u8 as usize).wrapping_sub(address) as u64;
        assert_eq!(code_address(offset.wrapping_add(data_offset)), None);
        assert_eq!(code_address(u64::MAX), None);
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
