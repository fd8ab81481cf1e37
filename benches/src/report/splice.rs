//! The generated section in a file: the lines [`BEGIN_MARKER`] and
//! [`END_MARKER`] that bound it, [`splice`] (the section replaced in a
//! file's text, everything outside the markers kept byte for byte),
//! [`check_markers`] before a run, [`write_generated`] after it, and their
//! errors.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// The line that opens the generated section.
pub const BEGIN_MARKER: &str = "<!-- BEGIN GENERATED: flagpost-bench -->";
/// The line that closes the generated section.
pub const END_MARKER: &str = "<!-- END GENERATED: flagpost-bench -->";
/// The line that opens the generated summary table (optional; at the top of
/// `BENCHMARKS.md`).
pub const SUMMARY_BEGIN_MARKER: &str = "<!-- BEGIN GENERATED: flagpost-bench summary -->";
/// The line that closes the generated summary table.
pub const SUMMARY_END_MARKER: &str = "<!-- END GENERATED: flagpost-bench summary -->";

/// Why the generated section could not be placed in a file's text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MarkerError {
    /// A [`BEGIN_MARKER`] line (1-based line number) with no
    /// [`END_MARKER`] line after it.
    MissingEnd {
        /// The line of the begin marker.
        begin_line: usize,
    },
    /// An [`END_MARKER`] line with no [`BEGIN_MARKER`] line before it.
    MissingBegin {
        /// The line of the end marker.
        end_line: usize,
    },
    /// A marker line that appears twice.
    Duplicate {
        /// The line of the second occurrence.
        line: usize,
    },
    /// The summary's markers are not one [`SUMMARY_BEGIN_MARKER`] line
    /// followed by one [`SUMMARY_END_MARKER`] line.
    Summary {
        /// The first marker line that breaks the pair.
        line: usize,
    },
}

impl fmt::Display for MarkerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MarkerError::MissingEnd { begin_line } => write!(
                f,
                "line {begin_line} opens the generated section but no `{END_MARKER}` line follows"
            ),
            MarkerError::MissingBegin { end_line } => write!(
                f,
                "line {end_line} closes a generated section that no `{BEGIN_MARKER}` line opens"
            ),
            MarkerError::Duplicate { line } => {
                write!(f, "line {line} repeats a generated-section marker")
            }
            MarkerError::Summary { line } => write!(
                f,
                "line {line}: the summary needs one `{SUMMARY_BEGIN_MARKER}` line and then one `{SUMMARY_END_MARKER}` line"
            ),
        }
    }
}

impl std::error::Error for MarkerError {}

/// Why [`write_generated`] failed; the file is unchanged.
#[derive(Debug)]
#[non_exhaustive]
pub enum WriteError {
    /// The file's markers are unusable.
    Markers {
        /// The file.
        path: PathBuf,
        /// What is wrong with its markers.
        error: MarkerError,
    },
    /// Reading the file, or writing and renaming its replacement, failed.
    Io {
        /// The file being read or written.
        path: PathBuf,
        /// The operating system's error.
        error: io::Error,
    },
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteError::Markers { path, error } => write!(f, "{}: {error}", path.display()),
            WriteError::Io { path, error } => write!(f, "{}: {error}", path.display()),
        }
    }
}

impl std::error::Error for WriteError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            WriteError::Markers { error, .. } => Some(error),
            WriteError::Io { error, .. } => Some(error),
        }
    }
}

/// `existing` with the text between its [`BEGIN_MARKER`] and [`END_MARKER`]
/// lines replaced by `generated` (a newline is added if it lacks one).
/// Everything up to and including the begin line, and from the end line on,
/// is kept byte for byte. Without markers, the markers and `generated` are
/// appended after a blank line.
pub fn splice(existing: &str, generated: &str) -> Result<String, MarkerError> {
    let mut begin = None; // (line number, byte offset after the line)
    let mut end = None; // (line number, byte offset of the line)
    let mut offset = 0;
    for (i, line) in existing.split_inclusive('\n').enumerate() {
        let number = i + 1;
        let text = line.trim();
        if text == BEGIN_MARKER {
            if begin.is_some() {
                return Err(MarkerError::Duplicate { line: number });
            }
            begin = Some((number, offset + line.len()));
        } else if text == END_MARKER {
            if end.is_some() {
                return Err(MarkerError::Duplicate { line: number });
            }
            if begin.is_none() {
                // also an end line before the begin line
                return Err(MarkerError::MissingBegin { end_line: number });
            }
            end = Some((number, offset));
        }
        offset += line.len();
    }
    let body = if generated.ends_with('\n') || generated.is_empty() {
        generated.to_owned()
    } else {
        format!("{generated}\n")
    };
    match (begin, end) {
        (Some((_, after_begin)), Some((_, end_at))) => {
            // the begin line ends with its newline: the end line follows it
            let mut out = String::with_capacity(existing.len() + body.len());
            out.push_str(&existing[..after_begin]);
            out.push_str(&body);
            out.push_str(&existing[end_at..]);
            Ok(out)
        }
        (Some((begin_line, _)), None) => Err(MarkerError::MissingEnd { begin_line }),
        (None, Some((end_line, _))) => Err(MarkerError::MissingBegin { end_line }),
        (None, None) => {
            let mut out = existing.to_owned();
            if !out.is_empty() {
                if !out.ends_with('\n') {
                    out.push('\n');
                }
                out.push('\n');
            }
            out.push_str(BEGIN_MARKER);
            out.push('\n');
            out.push_str(&body);
            out.push_str(END_MARKER);
            out.push('\n');
            Ok(out)
        }
    }
}

/// `existing` with the text between its [`SUMMARY_BEGIN_MARKER`] and
/// [`SUMMARY_END_MARKER`] lines replaced by `summary`, everything else kept
/// byte for byte; unchanged when it has no summary markers.
pub fn splice_summary(existing: &str, summary: &str) -> Result<String, MarkerError> {
    let mut begin = None; // (line number, byte offset after the line)
    let mut end = None; // byte offset of the line
    let mut offset = 0;
    for (i, line) in existing.split_inclusive('\n').enumerate() {
        let number = i + 1;
        let text = line.trim();
        if text == SUMMARY_BEGIN_MARKER {
            if begin.is_some() {
                return Err(MarkerError::Summary { line: number });
            }
            begin = Some((number, offset + line.len()));
        } else if text == SUMMARY_END_MARKER {
            if end.is_some() || begin.is_none() {
                return Err(MarkerError::Summary { line: number });
            }
            end = Some(offset);
        }
        offset += line.len();
    }
    match (begin, end) {
        (Some((_, after_begin)), Some(end_at)) => {
            let mut out = String::with_capacity(existing.len() + summary.len() + 1);
            out.push_str(&existing[..after_begin]);
            out.push_str(summary);
            if !summary.is_empty() && !summary.ends_with('\n') {
                out.push('\n');
            }
            out.push_str(&existing[end_at..]);
            Ok(out)
        }
        (Some((line, _)), None) => Err(MarkerError::Summary { line }),
        _ => Ok(existing.to_owned()),
    }
}

/// Checks, before a long run, that [`write_generated`] will be able to use
/// the file at `path`: it is readable (or absent) and its markers are
/// usable. Nothing is written.
pub fn check_markers(path: &Path) -> Result<(), WriteError> {
    match std::fs::read_to_string(path) {
        Ok(text) => splice(&text, "")
            .and_then(|_| splice_summary(&text, ""))
            .map(|_| ())
            .map_err(|error| WriteError::Markers {
                path: path.to_owned(),
                error,
            }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(WriteError::Io {
            path: path.to_owned(),
            error,
        }),
    }
}

/// Puts `generated` between the markers of the file at `path` (see
/// [`splice`]) and `summary`, if given, between its summary markers (see
/// [`splice_summary`]); a missing file is created. The new text is written to a
/// temporary file beside it and renamed over it, so a failure leaves the
/// file as it was.
pub fn write_generated(
    path: &Path,
    generated: &str,
    summary: Option<&str>,
) -> Result<(), WriteError> {
    let io_error = |error| WriteError::Io {
        path: path.to_owned(),
        error,
    };
    let existing = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(io_error(e)),
    };
    let text = splice(&existing, generated)
        .and_then(|text| match summary {
            Some(summary) => splice_summary(&text, summary),
            None => Ok(text),
        })
        .map_err(|error| WriteError::Markers {
            path: path.to_owned(),
            error,
        })?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "report.md".into());
    let temp = path.with_file_name(format!(".{name}.flagpost-bench.tmp"));
    std::fs::write(&temp, text).map_err(|error| WriteError::Io {
        path: temp.clone(),
        error,
    })?;
    std::fs::rename(&temp, path).map_err(|e| {
        let _ = std::fs::remove_file(&temp);
        io_error(e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generated() -> &'static str {
        "## Generated\n\n| a | b |\n|---|---|\n| 1 | 2 |\n"
    }

    #[test]
    fn splice_keeps_outside_text_byte_for_byte() {
        let before = "# Benchmarks\r\n\nHand-written  analysis, trailing spaces   \n\n";
        let after = "\n## After\n\nno final newline";
        let existing =
            format!("{before}{BEGIN_MARKER}\nold generated text\nmore\n{END_MARKER}{after}");
        let out = splice(&existing, generated()).expect("markers are fine");
        assert_eq!(
            out,
            format!("{before}{BEGIN_MARKER}\n{}{END_MARKER}{after}", generated())
        );
        // idempotent: a second run with the same text changes nothing
        assert_eq!(splice(&out, generated()).expect("again"), out);
        // and a different text only changes what is between the markers
        let other = splice(&out, "x\n").expect("other");
        assert!(other.starts_with(&format!("{before}{BEGIN_MARKER}\nx\n{END_MARKER}")));
        assert!(other.ends_with(after));
    }

    #[test]
    fn splice_accepts_indented_marker_lines_and_adds_a_final_newline() {
        let existing = format!("a\n  {BEGIN_MARKER}  \n{END_MARKER}\nz\n");
        let out = splice(&existing, "body").expect("markers");
        assert_eq!(
            out,
            format!("a\n  {BEGIN_MARKER}  \nbody\n{END_MARKER}\nz\n")
        );
    }

    #[test]
    fn splice_appends_when_markers_are_missing() {
        let out = splice("# Title\n\ntext", generated()).expect("append");
        assert_eq!(
            out,
            format!(
                "# Title\n\ntext\n\n{BEGIN_MARKER}\n{}{END_MARKER}\n",
                generated()
            )
        );
        let empty = splice("", "g\n").expect("empty file");
        assert_eq!(empty, format!("{BEGIN_MARKER}\ng\n{END_MARKER}\n"));
    }

    #[test]
    fn splice_rejects_broken_markers() {
        let no_end = format!("a\nb\n{BEGIN_MARKER}\nold\n");
        assert_eq!(
            splice(&no_end, "g"),
            Err(MarkerError::MissingEnd { begin_line: 3 })
        );
        let no_begin = format!("a\n{END_MARKER}\n");
        assert_eq!(
            splice(&no_begin, "g"),
            Err(MarkerError::MissingBegin { end_line: 2 })
        );
        let reversed = format!("{END_MARKER}\n{BEGIN_MARKER}\n");
        assert_eq!(
            splice(&reversed, "g"),
            Err(MarkerError::MissingBegin { end_line: 1 })
        );
        let twice = format!("{BEGIN_MARKER}\n{END_MARKER}\n{BEGIN_MARKER}\n{END_MARKER}\n");
        assert_eq!(splice(&twice, "g"), Err(MarkerError::Duplicate { line: 3 }));
        assert!(MarkerError::MissingEnd { begin_line: 3 }
            .to_string()
            .contains("line 3"));
    }

    #[test]
    fn write_generated_leaves_a_broken_file_untouched() {
        let dir = std::env::temp_dir().join(format!("flagpost-report-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("BENCHMARKS.md");
        let broken = format!("# B\n{BEGIN_MARKER}\nhalf\n");
        std::fs::write(&path, &broken).expect("write");
        match write_generated(&path, "new\n", Some("summary\n")) {
            Err(WriteError::Markers {
                error: MarkerError::MissingEnd { begin_line: 2 },
                ..
            }) => {}
            other => panic!("expected a marker error, got {other:?}"),
        }
        assert_eq!(std::fs::read_to_string(&path).expect("read"), broken);

        // a missing file is created with the section
        let fresh = dir.join("new.md");
        let _ = std::fs::remove_file(&fresh);
        write_generated(&fresh, "g\n", None).expect("create");
        assert_eq!(
            std::fs::read_to_string(&fresh).expect("read"),
            format!("{BEGIN_MARKER}\ng\n{END_MARKER}\n")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_summary_is_replaced_between_its_markers_only() {
        let existing = format!(
            "# B\n\nintro\n{SUMMARY_BEGIN_MARKER}\nold\n{SUMMARY_END_MARKER}\n\ntext\n{BEGIN_MARKER}\nold\n{END_MARKER}\n"
        );
        let out = splice_summary(&existing, "| new |").expect("summary markers");
        assert_eq!(
            out,
            existing.replace(
                &format!("{SUMMARY_BEGIN_MARKER}\nold\n"),
                &format!("{SUMMARY_BEGIN_MARKER}\n| new |\n")
            )
        );
        // the generated section is left to `splice`
        assert!(out.contains(&format!("{BEGIN_MARKER}\nold\n{END_MARKER}")));
        // no summary markers: nothing changes
        assert_eq!(splice_summary("a\nb", "x").expect("none"), "a\nb");
        // a broken pair is an error, named by line
        let half = format!("a\n{SUMMARY_BEGIN_MARKER}\n");
        assert_eq!(
            splice_summary(&half, "x"),
            Err(MarkerError::Summary { line: 2 })
        );
        let reversed = format!("{SUMMARY_END_MARKER}\n{SUMMARY_BEGIN_MARKER}\n");
        assert_eq!(
            splice_summary(&reversed, "x"),
            Err(MarkerError::Summary { line: 1 })
        );
    }
}
