//! `casegate ingest [--json] FILE...` — the mail-server pipe and the operator's tool.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};

use anyhow::Context as _;
use serde::Serialize;

use super::{print_json, UsageError};
use crate::config::Config;
use crate::ingest::{Gateway, IngestReport, Origin, Prepared, DEFAULT_BATCH, DEFAULT_BATCH_BYTES};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print one JSON object per mail: {"file","message_id","outcome","case","reason"}
    #[arg(long)]
    json: bool,

    /// Mail files (RFC 5322). '-' reads one mail from stdin; a directory means every
    /// file in it (for a Maildir: new/ and cur/), in name order
    #[arg(required = true, value_name = "FILE")]
    files: Vec<String>,
}

/// One line of `ingest --json` output.
#[derive(Serialize)]
struct Line<'a> {
    file: &'a str,
    message_id: Option<&'a str>,
    outcome: &'a str,
    case: Option<String>,
    reason: Option<&'a str>,
}

pub fn run(config: Arc<Config>, args: Args) -> anyhow::Result<()> {
    let inputs = expand(&args.files)?;
    // Notifications are rendered when sent, but a broken template override must stop
    // ingest before it takes mail whose notifications could then never be built.
    if config.notify.enabled {
        crate::notify::check_templates(&config)?;
    }
    let mut gateway = Gateway::open(Arc::clone(&config))?;
    let _checkpoints = crate::store::Checkpointer::start(&gateway.store)?;
    let mut failures = 0usize;
    // A reader thread reads and prepares (hashes, parses, compresses) the next batch while
    // this one writes the current batch; the bounded channel keeps at most one batch ahead.
    let (batches, ready) = mpsc::sync_channel::<Vec<(String, anyhow::Result<Prepared>)>>(1);
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let reader_config = Arc::clone(&config);
        let inputs = &inputs;
        scope.spawn(move || {
            // A batch ends at DEFAULT_BATCH mails or DEFAULT_BATCH_BYTES of mail, whichever
            // comes first, so that a folder of large mails cannot fill the memory.
            let mut pending: Vec<(String, anyhow::Result<Vec<u8>>)> = Vec::new();
            let mut bytes = 0;
            for (i, input) in inputs.iter().enumerate() {
                let raw = read_input(input);
                bytes += raw.as_ref().map_or(0, Vec::len);
                pending.push((input.clone(), raw));
                if pending.len() < DEFAULT_BATCH && bytes < DEFAULT_BATCH_BYTES && i + 1 < inputs.len() {
                    continue;
                }
                bytes = 0;
                if batches.send(prepare_batch(&reader_config, std::mem::take(&mut pending))).is_err() {
                    return; // the writer stopped on an error
                }
            }
        });
        for batch in ready {
            let (mut prepared, mut origins, mut names) = (Vec::new(), Vec::new(), Vec::new());
            for (name, item) in batch {
                match item {
                    Ok(p) => {
                        let origin = if name == "-" {
                            Origin { description: "stdin".into(), ..Default::default() }
                        } else {
                            Origin::file(&name)
                        };
                        names.push(name);
                        prepared.push(p);
                        origins.push(origin);
                    }
                    Err(e) => {
                        // One unreadable file must not stop the others; the exit code tells.
                        eprintln!("casegate: {name}: {e:#}");
                        failures += 1;
                    }
                }
            }
            let items: Vec<(Prepared, &Origin)> = prepared.into_iter().zip(origins.iter()).collect();
            let reports =
                gateway.ingest_prepared(items).context("ingest failed; nothing of the current batch was stored")?;
            for (name, report) in names.iter().zip(&reports) {
                print_report(name, report, &config, args.json)?;
            }
        }
        Ok(())
    })?;
    if failures > 0 {
        anyhow::bail!("{failures} of {} inputs could not be read", inputs.len());
    }
    Ok(())
}

/// Prepares the readable inputs of a batch; unreadable ones keep their error.
fn prepare_batch(
    config: &Config,
    inputs: Vec<(String, anyhow::Result<Vec<u8>>)>,
) -> Vec<(String, anyhow::Result<Prepared>)> {
    let (names, results): (Vec<String>, Vec<anyhow::Result<Vec<u8>>>) = inputs.into_iter().unzip();
    let mut errors = Vec::new();
    let mut raws = Vec::new();
    for result in results {
        match result {
            Ok(raw) => {
                raws.push(raw);
                errors.push(None);
            }
            Err(e) => errors.push(Some(e)),
        }
    }
    let mut prepared = Prepared::many(config, raws).into_iter();
    names
        .into_iter()
        .zip(errors)
        .map(|(name, error)| match error {
            Some(e) => (name, Err(e)),
            None => (name, Ok(prepared.next().expect("one prepared mail per readable input"))),
        })
        .collect()
}

fn print_report(input: &str, report: &IngestReport, config: &Config, json: bool) -> anyhow::Result<()> {
    let case = report.case.map(|c| config.case_token(c));
    if json {
        return print_json(&Line {
            file: input,
            message_id: report.message_id.as_deref(),
            outcome: report.outcome.as_str(),
            case,
            reason: report.reason.as_deref(),
        });
    }
    let mut line = format!("{input}: {}", report.outcome);
    if let Some(c) = case {
        line.push_str(&format!(" {c}"));
    }
    if let Some(r) = &report.reason {
        line.push_str(&format!(" ({r})"));
    }
    println!("{line}");
    Ok(())
}

/// Expands directories into their files, sorted; keeps '-' and plain files as given.
fn expand(args: &[String]) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    let stdin_count = args.iter().filter(|a| *a == "-").count();
    if stdin_count > 1 {
        return Err(UsageError("'-' (stdin) may be given only once: it holds one mail".into()).into());
    }
    for arg in args {
        let path = Path::new(arg);
        if arg != "-" && path.is_dir() {
            let maildir = path.join("new").is_dir() && path.join("cur").is_dir();
            let dirs: Vec<PathBuf> =
                if maildir { vec![path.join("new"), path.join("cur")] } else { vec![path.to_path_buf()] };
            for dir in dirs {
                let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
                    .with_context(|| format!("cannot list {}", dir.display()))?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.is_file())
                    .collect();
                files.sort();
                out.extend(files.into_iter().map(|p| p.display().to_string()));
            }
        } else {
            out.push(arg.clone());
        }
    }
    Ok(out)
}

fn read_input(input: &str) -> anyhow::Result<Vec<u8>> {
    let mut raw = Vec::new();
    if input == "-" {
        std::io::stdin().lock().read_to_end(&mut raw).context("cannot read stdin")?;
    } else {
        raw = std::fs::read(input).context("cannot read file")?;
    }
    Ok(raw)
}
