//! Reading and writing files by one rule: bounded reads of inputs, and the one writer every
//! output goes through (after coreutils' `sort -o` / `cp` same-file checks).
//!
//! - Inputs are read with a size limit ([`read_limited`]), so `--text /dev/zero` ends with a
//!   one-line error instead of exhausting memory.
//! - An [`OutputPlan`] names a command's inputs and outputs and is checked before any work:
//!   an output that is one of the inputs (the same file, through any path or link) or another
//!   output is refused, as are folders, sockets and block devices; the folder of every regular
//!   output must exist and be writable (a probe file is created and removed there).
//! - [`OutputFile`] writes a regular file (or a path not yet there) to a temporary file beside
//!   the target and renames it into place, so a failure leaves no half-written file and the
//!   old file's permissions are kept. A symbolic link is followed: its target is replaced, the
//!   link stays. A character device, a FIFO or a terminal (`/dev/stdout`, `/dev/null`) is
//!   written *to*, never replaced by a regular file.
//!
//! Pure `std`; the lowest layer, so every other layer (model checkpoints, slopes files,
//! figures, reports, the TUI's exports) writes through it.

pub mod lock;
pub mod stop;

use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The most a text file (`--text`, each `.txt` of a folder, `--token-ids`) may hold: 256 MiB,
/// some hundred times a long book.
pub const MAX_TEXT_BYTES: u64 = 256 << 20;
/// The most a small JSON input (config.json, a slopes file, an `eval --json` file, a training
/// checkpoint's state) may hold: 16 MiB.
pub const MAX_JSON_BYTES: u64 = 16 << 20;
/// The most a tokenizer.json may hold: 256 MiB (BLOOM's, with 250,680 tokens, has 14 MB).
pub const MAX_TOKENIZER_BYTES: u64 = 256 << 20;

/// Symbolic links followed at most, as the kernel's ELOOP limit.
const MAX_LINK_DEPTH: usize = 40;

/// `n` bytes in the largest whole unit (KiB, MiB, GiB).
pub fn fmt_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 && n.is_multiple_of(1 << 30) => format!("{} GiB", n >> 30),
        n if n >= 1 << 20 => format!("{} MiB", n >> 20),
        n if n >= 1 << 10 => format!("{} KiB", n >> 10),
        n => format!("{n} bytes"),
    }
}

/// The message for `path` when this user may not read it (a file without read permission, a
/// folder that cannot be listed, or a folder above it that cannot be searched); `None` when the
/// path is readable or missing (missing is the caller's own message).
pub fn permission_problem(path: &Path) -> Option<String> {
    let denied = |e: &io::Error| e.kind() == io::ErrorKind::PermissionDenied;
    let what = match std::fs::metadata(path) {
        Err(e) if denied(&e) => "a folder above it cannot be searched",
        Err(_) => return None,
        Ok(m) if m.is_dir() => match std::fs::read_dir(path) {
            Err(e) if denied(&e) => "the folder cannot be listed",
            _ => return None,
        },
        Ok(_) => match File::open(path) {
            Err(e) if denied(&e) => "the file cannot be read",
            _ => return None,
        },
    };
    Some(format!(
        "cannot read '{}': permission denied ({what}) (hint: check its permissions and owner, e.g. `ls -l`, `chmod a+r`)",
        path.display()
    ))
}

/// Reads at most `limit` bytes of `path`; a longer file (or an endless device such as
/// `/dev/zero`) is an error naming the file, the limit and `what` it was read as.
pub fn read_limited(path: &Path, limit: u64, what: &str) -> Result<Vec<u8>, String> {
    let file = File::open(path).map_err(|e| format!("cannot read '{}': {e}", path.display()))?;
    if let Ok(m) = file.metadata()
        && m.is_dir()
    {
        return Err(format!(
            "cannot read '{}': it is a folder, not {what} (hint: give the path of a file)",
            path.display()
        ));
    }
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read '{}': {e}", path.display()))?;
    if bytes.len() as u64 > limit {
        return Err(format!(
            "'{}' is larger than {} and too big for {what} (hint: give a smaller file)",
            path.display(),
            fmt_bytes(limit)
        ));
    }
    Ok(bytes)
}

/// [`read_limited`] as UTF-8 text.
pub fn read_limited_string(path: &Path, limit: u64, what: &str) -> Result<String, String> {
    let bytes = read_limited(path, limit, what)?;
    String::from_utf8(bytes).map_err(|e| {
        format!(
            "'{}' is not UTF-8 text (invalid byte at offset {})",
            path.display(),
            e.utf8_error().valid_up_to()
        )
    })
}

/// What an output path is, after following symbolic links.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputKind {
    /// A regular file, or nothing yet: written to a temporary file and renamed into place.
    Regular,
    /// A character device, a FIFO or a terminal: written to directly.
    Stream,
}

/// An output path resolved: the file that will really be written.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The path as given (for messages).
    pub given: PathBuf,
    /// The file written: `given` with its links followed.
    pub target: PathBuf,
    /// How it is written.
    pub kind: OutputKind,
    /// The existing file's identity (device, inode), when there is one.
    pub id: Option<(u64, u64)>,
}

fn id_of(m: &Metadata) -> (u64, u64) {
    (m.dev(), m.ino())
}

/// The kind of an existing file, or the error for kinds never written.
fn kind_of(m: &Metadata, shown: &std::path::Display<'_>) -> Result<OutputKind, String> {
    let ft = m.file_type();
    if ft.is_file() {
        Ok(OutputKind::Regular)
    } else if ft.is_dir() {
        Err(format!(
            "cannot write '{shown}': it is a folder (hint: give a file name inside it)"
        ))
    } else if ft.is_char_device() || ft.is_fifo() {
        Ok(OutputKind::Stream)
    } else if ft.is_block_device() {
        Err(format!(
            "refusing to write '{shown}': it is a block device (hint: give a file name)"
        ))
    } else {
        Err(format!(
            "cannot write '{shown}': it is a socket (hint: give a file name)"
        ))
    }
}

/// This process's standard output or error, when `id` is that file (`--json /dev/stdout`, or a
/// path naming the file stdout is redirected to): a duplicate of its descriptor, which shares
/// its file offset, so the output lands where the shell sent it.
fn standard_stream(id: (u64, u64)) -> Option<File> {
    use std::os::fd::AsFd;
    let out = std::io::stdout();
    let err = std::io::stderr();
    [out.as_fd(), err.as_fd()].into_iter().find_map(|fd| {
        let file = File::from(fd.try_clone_to_owned().ok()?);
        let m = file.metadata().ok()?;
        (id_of(&m) == id).then_some(file)
    })
}

/// Follows `path`'s links (a dangling link resolves to the path it names, which will be created)
/// and says how the result is written; folders, sockets and block devices are errors.
pub fn resolve_output(path: &Path) -> Result<Resolved, String> {
    let shown = path.display();
    if path.as_os_str().is_empty() {
        return Err("an output path is empty (hint: give a file name)".to_string());
    }
    match std::fs::metadata(path) {
        Ok(m) => {
            let id = Some(id_of(&m));
            let kind = kind_of(&m, &shown)?;
            // The standard streams are written through their descriptors, whatever they are.
            if standard_stream(id_of(&m)).is_some() {
                return Ok(Resolved {
                    given: path.to_path_buf(),
                    target: path.to_path_buf(),
                    kind: OutputKind::Stream,
                    id,
                });
            }
            let target = match kind {
                OutputKind::Regular => std::fs::canonicalize(path)
                    .map_err(|e| format!("cannot write '{shown}': {e}"))?,
                // Devices and FIFOs are opened by the path given (which may be a /proc link).
                OutputKind::Stream => path.to_path_buf(),
            };
            Ok(Resolved {
                given: path.to_path_buf(),
                target,
                kind,
                id,
            })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // Nothing there, or a dangling link: follow the links to the name to create.
            let mut target = path.to_path_buf();
            for _ in 0..MAX_LINK_DEPTH {
                match std::fs::symlink_metadata(&target) {
                    Ok(m) if m.file_type().is_symlink() => {
                        let link = std::fs::read_link(&target)
                            .map_err(|e| format!("cannot write '{shown}': {e}"))?;
                        target = match target.parent() {
                            Some(p) if link.is_relative() => p.join(link),
                            _ => link,
                        };
                    }
                    Ok(_) => {
                        return Err(format!(
                            "cannot write '{shown}': it changed while being checked"
                        ));
                    }
                    Err(_) => {
                        if target.file_name().is_none() {
                            return Err(format!(
                                "'{shown}' is not a file path (hint: give a file name)"
                            ));
                        }
                        return Ok(Resolved {
                            given: path.to_path_buf(),
                            target,
                            kind: OutputKind::Regular,
                            id: None,
                        });
                    }
                }
            }
            Err(format!(
                "cannot write '{shown}': too many levels of symbolic links"
            ))
        }
        Err(e) => Err(format!("cannot write '{shown}': {e}")),
    }
}

/// The folder a regular output's temporary file goes in.
fn folder_of(target: &Path) -> PathBuf {
    match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// An absolute, normalised name for a path that may not exist yet: its folder canonicalised
/// plus its file name (so `out.json` and `./out.json` compare equal).
fn normalised(target: &Path) -> Option<PathBuf> {
    let folder = std::fs::canonicalize(folder_of(target)).ok()?;
    Some(folder.join(target.file_name()?))
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A fresh temporary name beside `target` (hidden, with the process id and a counter, and the
/// target's extension last, which image encoders look at).
fn temp_beside(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    folder_of(target).join(format!(".{name}.{}-{n}.tmp", std::process::id()))
}

/// Checks that a regular output's folder exists and takes a new file (creates and removes one).
fn probe_folder(r: &Resolved) -> Result<(), String> {
    let folder = folder_of(&r.target);
    let shown = r.given.display();
    match std::fs::metadata(&folder) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(format!(
                "cannot write '{shown}': '{}' is not a folder",
                folder.display()
            ));
        }
        Err(_) => {
            return Err(format!(
                "cannot write '{shown}': the folder '{}' does not exist (hint: create it first)",
                folder.display()
            ));
        }
    }
    let probe = temp_beside(&r.target);
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .map_err(|e| {
            format!(
                "cannot write '{shown}': {e} (hint: check that the folder '{}' is writable)",
                folder.display()
            )
        })?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Checks a character device can be opened for writing (a FIFO is not opened: that would wait
/// for its reader).
fn probe_stream(r: &Resolved) -> Result<(), String> {
    if r.id.and_then(standard_stream).is_some() {
        return Ok(());
    }
    let is_fifo = std::fs::metadata(&r.target).is_ok_and(|m| m.file_type().is_fifo());
    if !is_fifo {
        OpenOptions::new()
            .write(true)
            .open(&r.target)
            .map_err(|e| format!("cannot write '{}': {e}", r.given.display()))?;
    }
    Ok(())
}

/// A command's inputs and outputs, checked together before the work starts.
#[derive(Debug, Default)]
pub struct OutputPlan {
    inputs: Vec<(String, PathBuf)>,
    outputs: Vec<(String, PathBuf)>,
}

impl OutputPlan {
    /// An empty plan.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an input file read by the command (`what` names it in messages, e.g. `--text`).
    /// A folder adds every file directly inside it (a model folder, a folder of texts).
    pub fn input(&mut self, what: &str, path: &Path) -> &mut Self {
        if path.is_dir() {
            if let Ok(entries) = std::fs::read_dir(path) {
                for e in entries.flatten() {
                    let p = e.path();
                    if p.is_file() {
                        self.inputs.push((what.to_string(), p));
                    }
                }
            }
        } else {
            self.inputs.push((what.to_string(), path.to_path_buf()));
        }
        self
    }

    /// Adds an optional input.
    pub fn input_opt(&mut self, what: &str, path: Option<&Path>) -> &mut Self {
        if let Some(p) = path {
            self.input(what, p);
        }
        self
    }

    /// Adds an output file the command writes (`what` names it, e.g. `--json`).
    pub fn output(&mut self, what: &str, path: &Path) -> &mut Self {
        self.outputs.push((what.to_string(), path.to_path_buf()));
        self
    }

    /// Adds an optional output.
    pub fn output_opt(&mut self, what: &str, path: Option<&Path>) -> &mut Self {
        if let Some(p) = path {
            self.output(what, p);
        }
        self
    }

    /// Checks every output: resolvable, not an input, not another output, its folder writable
    /// (regular files) or openable (devices). Call before any work.
    pub fn check(&self) -> Result<(), String> {
        let input_ids: Vec<(&str, &Path, (u64, u64))> = self
            .inputs
            .iter()
            .filter_map(|(w, p)| {
                let m = std::fs::metadata(p).ok()?;
                m.is_file().then(|| (w.as_str(), p.as_path(), id_of(&m)))
            })
            .collect();
        let mut seen: Vec<(&str, Resolved, Option<PathBuf>)> = Vec::new();
        for (what, path) in &self.outputs {
            let r = resolve_output(path).map_err(|e| format!("{what}: {e}"))?;
            if r.kind == OutputKind::Regular {
                if let Some(id) = r.id
                    && let Some((iw, ip, _)) = input_ids.iter().find(|(_, _, i)| *i == id)
                {
                    return Err(format!(
                        "refusing to write {what} '{}': it is the input {iw} '{}' (hint: choose another output file)",
                        path.display(),
                        ip.display()
                    ));
                }
                let norm = normalised(&r.target);
                if let Some((ow, other, _)) = seen.iter().find(|(_, o, on)| {
                    o.kind == OutputKind::Regular
                        && ((r.id.is_some() && o.id == r.id) || (norm.is_some() && *on == norm))
                }) {
                    return Err(format!(
                        "{what} '{}' and {ow} '{}' are the same file (hint: give each output its own file)",
                        path.display(),
                        other.given.display()
                    ));
                }
                probe_folder(&r).map_err(|e| format!("{what}: {e}"))?;
                seen.push((what, r, norm));
            } else {
                probe_stream(&r).map_err(|e| format!("{what}: {e}"))?;
                seen.push((what, r, None));
            }
        }
        Ok(())
    }
}

/// Checks one output file on its own (no inputs to compare with).
pub fn check_output(what: &str, path: &Path) -> Result<(), String> {
    OutputPlan::new().output(what, path).check()
}

/// Checks an output folder before the work: an existing path must be a folder, and a missing one
/// must be creatable (its parent exists); nothing is created here.
pub fn check_output_dir(what: &str, dir: &Path) -> Result<(), String> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {
            let probe = dir.join(format!(".probe.{}.tmp", std::process::id()));
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&probe)
                .map_err(|e| format!("{what}: cannot write into '{}': {e}", dir.display()))?;
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Ok(_) => Err(format!(
            "{what} '{}' is a file, not a folder (hint: give a folder name)",
            dir.display()
        )),
        Err(_) => {
            let parent = folder_of(dir);
            if std::fs::metadata(&parent).is_ok_and(|m| m.is_dir()) {
                Ok(())
            } else {
                Err(format!(
                    "{what} '{}': the folder '{}' does not exist (hint: create it first)",
                    dir.display(),
                    parent.display()
                ))
            }
        }
    }
}

enum Sink {
    Atomic {
        tmp: PathBuf,
        target: PathBuf,
        file: BufWriter<File>,
        committed: bool,
    },
    Direct(BufWriter<File>),
}

/// An output being written; [`OutputFile::commit`] finishes it (for regular files, the rename
/// into place). Dropped without a commit, a regular output leaves nothing behind.
pub struct OutputFile {
    given: PathBuf,
    sink: Sink,
}

impl OutputFile {
    /// Opens `path` for writing by the rule of this module.
    pub fn create(path: &Path) -> Result<Self, String> {
        let r = resolve_output(path)?;
        let shown = path.display();
        let sink = match r.kind {
            OutputKind::Stream => {
                let f = match r.id.and_then(standard_stream) {
                    Some(f) => f,
                    None => OpenOptions::new()
                        .write(true)
                        .open(&r.target)
                        .map_err(|e| format!("cannot write '{shown}': {e}"))?,
                };
                Sink::Direct(BufWriter::new(f))
            }
            OutputKind::Regular => {
                let tmp = temp_beside(&r.target);
                let f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&tmp)
                    .map_err(|e| {
                        format!(
                            "cannot write '{shown}': {e} (hint: check that the folder exists and is writable)"
                        )
                    })?;
                // Keep an existing file's permissions (the rename replaces the inode).
                if let Ok(m) = std::fs::metadata(&r.target) {
                    let _ =
                        f.set_permissions(std::fs::Permissions::from_mode(m.permissions().mode()));
                }
                Sink::Atomic {
                    tmp,
                    target: r.target,
                    file: BufWriter::new(f),
                    committed: false,
                }
            }
        };
        Ok(Self {
            given: path.to_path_buf(),
            sink,
        })
    }

    /// The writer (the file itself; kept for call sites that borrow a writer).
    pub fn writer(&mut self) -> &mut Self {
        self
    }

    fn error(&self, e: &io::Error) -> String {
        format!("cannot write '{}': {e}", self.given.display())
    }

    /// Flushes and, for a regular file, renames it into place.
    pub fn commit(mut self) -> Result<(), String> {
        match &mut self.sink {
            Sink::Direct(f) => f.flush().map_err(|e| self.error(&e)),
            Sink::Atomic {
                tmp,
                target,
                file,
                committed,
            } => {
                let flushed = file.flush().and_then(|()| file.get_ref().sync_data());
                if let Err(e) = flushed {
                    return Err(format!("cannot write '{}': {e}", self.given.display()));
                }
                std::fs::rename(&*tmp, &*target)
                    .map_err(|e| format!("cannot write '{}': {e}", self.given.display()))?;
                *committed = true;
                Ok(())
            }
        }
    }
}

impl Write for OutputFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.sink {
            Sink::Atomic { file, .. } => file.write(buf),
            Sink::Direct(f) => f.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.sink {
            Sink::Atomic { file, .. } => file.flush(),
            Sink::Direct(f) => f.flush(),
        }
    }
}

impl Drop for OutputFile {
    fn drop(&mut self) {
        if let Sink::Atomic { tmp, committed, .. } = &self.sink
            && !*committed
        {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

/// Writes `bytes` to `path` through [`OutputFile`].
pub fn write_bytes(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let mut f = OutputFile::create(path)?;
    f.write_all(bytes)
        .map_err(|e| format!("cannot write '{}': {e}", path.display()))?;
    f.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fmt_bytes_units() {
        assert_eq!(fmt_bytes(16 << 20), "16 MiB");
        assert_eq!(fmt_bytes(1 << 30), "1 GiB");
        assert_eq!(fmt_bytes(512), "512 bytes");
    }

    #[test]
    fn read_limited_stops_at_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.txt");
        std::fs::write(&p, "hello").unwrap();
        assert_eq!(read_limited(&p, 5, "text").unwrap(), b"hello");
        let e = read_limited(&p, 4, "text").unwrap_err();
        assert!(e.contains("larger than 4 bytes"), "{e}");
        let e = read_limited(Path::new("/dev/zero"), 1 << 10, "text").unwrap_err();
        assert!(e.contains("larger than 1 KiB"), "{e}");
    }
}
