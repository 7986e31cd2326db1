//! Mail templates: handlebars files under `templates/`, built into the binary and
//! overridable file by file from `templates_dir`.
//!
//! Every notification kind has three files: `<kind>.subject.hbs` (one line; casegate puts
//! `[CASE-42] ` in front, so no override can lose the token), `<kind>.text.hbs` and
//! `<kind>.html.hbs`. Shared pieces live in `partials/` (`text-*` for the text part,
//! `html-*` for the HTML part, e.g. `html-layout`).
//!
//! Two registries render them: the text one does not escape, the HTML one escapes every
//! `{{value}}` (customer text included), so a customer's `<script>` arrives as text. Both
//! run in strict mode, with `if`/`unless` made strict too (the built-in ones quietly treat
//! a misspelt name as false): a template that names a value casegate does not provide
//! fails. [`Templates::load`] renders every template with sample data for every audience,
//! so a broken override fails when casegate starts, not in a customer's inbox.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::Context as _;
use handlebars::{
    Context, Handlebars, Helper, HelperDef, HelperResult, Output, RenderContext, RenderError, RenderErrorReason,
    Renderable,
};
use serde::Serialize;

use crate::config::{Config, ConfigError};

/// The notification kinds, each with a subject, text and HTML template.
pub const KINDS: &[&str] = &[
    "acknowledgement",
    "opened-on-your-behalf",
    "new-case",
    "customer-reply",
    "reply",
    "note",
    "watcher-added",
    "watcher-removed",
    "picked-up",
    "resolved",
    "reopened",
    "closed",
    "field-changed",
    "not-applied",
    "follow-up-opened",
    "command-refused",
    "reason-required",
    "case-list",
    "survey",
    "bounced",
    "closing-soon",
];

/// Kinds that may be about no case at all (an answer to a mail that opened none).
const CASELESS_KINDS: &[&str] = &["not-applied", "command-refused", "case-list"];
/// Kinds that answer a mail: only they have `notice`.
const NOTICE_KINDS: &[&str] = &["not-applied", "follow-up-opened", "command-refused", "reason-required", "case-list"];
/// Kinds about a status change: only they have `change`.
const STATUS_KINDS: &[&str] = &["picked-up", "resolved", "reopened", "closed"];

macro_rules! builtin {
    ($($kind:literal),+ ; $($partial:literal),+) => {
        &[
            $(
                (concat!($kind, ".subject"), include_str!(concat!("../../templates/", $kind, ".subject.hbs"))),
                (concat!($kind, ".text"), include_str!(concat!("../../templates/", $kind, ".text.hbs"))),
                (concat!($kind, ".html"), include_str!(concat!("../../templates/", $kind, ".html.hbs"))),
            )+
            $( (concat!("partials/", $partial), include_str!(concat!("../../templates/partials/", $partial, ".hbs"))), )+
        ]
    };
}

/// Every built-in template: (name, source). The name is the path under `templates/`
/// without `.hbs`; an override is `<templates_dir>/<name>.hbs`.
pub const BUILTIN: &[(&str, &str)] = builtin!(
    "acknowledgement", "opened-on-your-behalf", "new-case", "customer-reply", "reply", "note", "watcher-added",
    "watcher-removed", "picked-up", "resolved", "reopened", "closed", "field-changed", "not-applied",
    "follow-up-opened", "command-refused", "reason-required", "case-list", "survey", "bounced", "closing-soon";
    "text-case", "text-message", "text-files", "text-footer", "html-layout", "html-case", "html-message",
    "html-files", "html-footer"
);

/// A rendered notification, before it becomes a mail.
#[derive(Debug, Clone, PartialEq, Eq)]
/// The body of a notification (its subject is rendered on its own: see
/// [`Templates::render_subject`]).
pub struct Rendered {
    pub text: String,
    pub html: String,
}

/// The compiled templates.
pub struct Templates {
    text: Handlebars<'static>,
    html: Handlebars<'static>,
    /// Which templates came from `templates_dir`, for the start-up log.
    pub overridden: Vec<String>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates").field("overridden", &self.overridden).finish_non_exhaustive()
    }
}

impl Templates {
    /// Compiles the built-in templates with the overrides from `dir`, then renders each
    /// with sample data for every audience. Errors name the file and what is wrong.
    pub fn load(dir: Option<&Path>) -> anyhow::Result<Templates> {
        let mut text = Handlebars::new();
        let mut html = Handlebars::new();
        for registry in [&mut text, &mut html] {
            registry.set_strict_mode(true);
            registry.register_helper("if", Box::new(StrictIf { positive: true }));
            registry.register_helper("unless", Box::new(StrictIf { positive: false }));
        }
        text.register_escape_fn(handlebars::no_escape);

        let mut overridden = Vec::new();
        if let Some(dir) = dir {
            check_override_names(dir)?;
        }
        for (name, builtin) in BUILTIN {
            let (source, origin) = match dir.map(|d| d.join(format!("{name}.hbs"))) {
                Some(path) if path.is_file() => {
                    let source = std::fs::read_to_string(&path)
                        .with_context(|| format!("cannot read template override {}", path.display()))?;
                    overridden.push(name.to_string());
                    (source, path.display().to_string())
                }
                _ => (builtin.to_string(), format!("built-in template {name}.hbs")),
            };
            let (registry, registered) = match name.strip_prefix("partials/") {
                Some(partial) if partial.starts_with("html-") => (&mut html, partial),
                Some(partial) => (&mut text, partial),
                None if name.ends_with(".html") => (&mut html, *name),
                None => (&mut text, *name),
            };
            let result = if name.starts_with("partials/") {
                registry.register_partial(registered, source)
            } else {
                registry.register_template_string(registered, source)
            };
            result.map_err(|e| anyhow::anyhow!("{origin}: {e}"))?;
        }
        let templates = Templates { text, html, overridden };
        templates.check_samples()?;
        Ok(templates)
    }

    /// The templates for this configuration, compiled once per process and templates
    /// directory (the ingest path renders with them on every mail).
    pub fn cached(config: &Config) -> anyhow::Result<Arc<Templates>> {
        /// Compiled templates by templates directory.
        type Cache = Mutex<Vec<(Option<std::path::PathBuf>, Arc<Templates>)>>;
        static CACHE: OnceLock<Cache> = OnceLock::new();
        let cache = CACHE.get_or_init(Default::default);
        let dir = config.templates_dir.clone();
        if let Some((_, t)) = cache.lock().unwrap_or_else(|e| e.into_inner()).iter().find(|(d, _)| *d == dir) {
            return Ok(Arc::clone(t));
        }
        // Compiled outside the lock: a slow disk must not hold up other configurations.
        // A broken template is a configuration problem (exit code 2), like a bad key.
        let templates = Arc::new(Templates::load(dir.as_deref()).map_err(|e| ConfigError::Invalid {
            path: config.path.clone(),
            key: "templates_dir".into(),
            message: format!("{e:#}"),
        })?);
        cache.lock().unwrap_or_else(|e| e.into_inner()).push((dir, Arc::clone(&templates)));
        Ok(templates)
    }

    /// Renders the text and HTML parts of a notification.
    pub fn render(&self, view: &View) -> Result<Rendered, RenderError> {
        let kind = view.kind;
        Ok(Rendered {
            text: tidy_text(&self.text.render(&format!("{kind}.text"), view)?),
            html: self.html.render(&format!("{kind}.html"), view)?,
        })
    }

    /// Only the subject line (without the case token, which goes in front).
    pub fn render_subject(&self, view: &View) -> Result<String, RenderError> {
        Ok(crate::parse::one_line(&self.text.render(&format!("{}.subject", view.kind), view)?))
    }

    fn check_samples(&self) -> anyhow::Result<()> {
        for kind in KINDS {
            for view in samples(kind) {
                self.render_subject(&view).and_then(|_| self.render(&view)).map_err(|e| {
                    anyhow::anyhow!(
                        "template {kind} fails with sample data (recipient role {}, case {}): {e}",
                        view.recipient.role,
                        if view.case.is_some() { "present" } else { "absent" }
                    )
                })?;
            }
        }
        Ok(())
    }
}

/// Refuses `.hbs` files in the override directory that override nothing: a misspelt
/// file name would otherwise be ignored without a word.
fn check_override_names(dir: &Path) -> anyhow::Result<()> {
    if !dir.is_dir() {
        anyhow::bail!("templates_dir {} is not a directory", dir.display());
    }
    let known: BTreeSet<String> = BUILTIN.iter().map(|(n, _)| format!("{n}.hbs")).collect();
    for sub in ["", "partials"] {
        let Ok(entries) = std::fs::read_dir(dir.join(sub)) else { continue };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel = if sub.is_empty() { name.clone() } else { format!("{sub}/{name}") };
            if name.ends_with(".hbs") && !known.contains(&rel) {
                anyhow::bail!(
                    "templates_dir {}: {rel} overrides no template; the names are those under templates/ (e.g. reply.text.hbs, partials/html-layout.hbs)",
                    dir.display()
                );
            }
        }
    }
    Ok(())
}

/// Text parts: no trailing spaces, at most one blank line in a row, one final newline.
fn tidy_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank = 0;
    for line in text.lines() {
        let line = line.trim_end();
        if line.is_empty() {
            blank += 1;
            if blank > 1 || out.is_empty() {
                continue;
            }
        } else {
            blank = 0;
        }
        out.push_str(line);
        out.push('\n');
    }
    while out.ends_with("\n\n") {
        out.pop();
    }
    out
}

/// `if`/`unless` that fail in strict mode when their value does not exist at all (a
/// `null` is fine: it is simply false).
#[derive(Clone, Copy)]
struct StrictIf {
    positive: bool,
}

impl HelperDef for StrictIf {
    fn call<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        r: &'reg Handlebars<'reg>,
        ctx: &'rc Context,
        rc: &mut RenderContext<'reg, 'rc>,
        out: &mut dyn Output,
    ) -> HelperResult {
        let name = if self.positive { "if" } else { "unless" };
        let param = h.param(0).ok_or(RenderErrorReason::ParamNotFoundForIndex(name, 0))?;
        if param.is_value_missing() {
            let path = param.relative_path().cloned().unwrap_or_else(|| "?".into());
            return Err(RenderErrorReason::MissingVariable(Some(path)).into());
        }
        use handlebars::JsonTruthy;
        let value = param.value().is_truthy(false) == self.positive;
        match if value { h.template() } else { h.inverse() } {
            Some(t) => t.render(r, ctx, rc, out),
            None => Ok(()),
        }
    }
}

// ---------------------------------------------------------------------------------------
// What templates see. Every key is always present (strict mode); absent things are null
// or empty. docs/notifications.md lists them for people who write overrides.

/// Everything a template can use.
#[derive(Debug, Clone, Serialize)]
pub struct View {
    /// The notification kind (the template's name).
    pub kind: &'static str,
    pub support: Support,
    pub recipient: RecipientView,
    /// The case; null only for answers about no case.
    pub case: Option<CaseView>,
    /// Who caused the event, when known.
    pub actor: Option<Person>,
    /// The thread entry the event is about (a reply, a note, a solution), when there is one.
    pub message: Option<MessageView>,
    /// A status change: from and to, as shown to people (`Open`, `Resolved`).
    pub change: Option<Change>,
    /// A field change (`impact` → `High`).
    pub field: Option<FieldView>,
    /// What an answer to a mail says.
    pub notice: Option<NoticeView>,
    /// For `case-list`: the recipient's cases.
    pub cases: Vec<CaseLine>,
    /// Ready-made `mailto:` links (empty strings when there is no case).
    pub links: Links,
    /// For `survey`: the link to the survey page.
    pub survey: Option<SurveyView>,
    /// For `closing-soon`: when the case closes itself.
    pub closing: Option<ClosingView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClosingView {
    /// The day, in words: `3 May 2026`.
    pub on: String,
    /// The exact time: `2026-05-03 09:00 UTC`.
    pub at: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct SurveyView {
    /// `{base_url}/survey/{token}`
    pub url: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Support {
    pub address: String,
    /// Display name of the From address, else `Support`.
    pub name: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct RecipientView {
    pub address: String,
    /// Why they get it: requester, contact, watcher, staff or sender.
    pub role: &'static str,
    pub is_staff: bool,
    pub is_watcher: bool,
    /// May accept or reject a proposed solution (requester or contact).
    pub can_decide: bool,
    /// Takes part in the case (staff, requester, contact or watcher): may add to it by
    /// replying. Someone who may not (the sender of a mail that was refused) is not told to.
    pub can_add: bool,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct CaseView {
    /// `CASE-42`
    pub token: String,
    pub number: i64,
    pub subject: String,
    pub status: String,
    pub impact: String,
    pub account: Option<String>,
    pub environment: Option<String>,
    /// What the case was opened with.
    pub description: String,
    pub requester: Option<String>,
    pub contact: Option<String>,
    pub opened_at: String,
    pub updated_at: String,
    /// The closed case this one follows up (`CASE-7`).
    pub follows_up: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Person {
    pub address: String,
    /// Display name when known, else the address.
    pub name: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct MessageView {
    pub from: Option<String>,
    /// customer, staff, note, system
    pub kind: String,
    pub body: String,
    /// File names of its attachments (all of them, whether carried or not).
    pub attachments: Vec<String>,
    /// Its files as this recipient gets them: carried inline or attached, or linked.
    pub files: Vec<FileView>,
    /// The thread entry (row id), for choosing the files when the mail is made.
    #[serde(skip)]
    pub entry: Option<i64>,
}

/// One file of the entry a notification reports.
#[derive(Debug, Clone, Serialize)]
pub struct FileView {
    pub name: String,
    pub content_type: String,
    /// In words: `12 KB`.
    pub size: String,
    /// Shown in the HTML part (`<img src="cid:{{cid}}">`): an inline image carried.
    pub cid: Option<String>,
    /// Carried as an attachment of this mail.
    pub attached: bool,
    /// Not carried (over `notify.attach_max_bytes`): the personal download link, when
    /// links can be made.
    pub link: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Change {
    pub from: String,
    pub to: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct FieldView {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct NoticeView {
    /// The quarantine reason code (`sender-not-participant`), for not-applied.
    pub reason: Option<String>,
    /// The reason in words, for not-applied.
    pub explanation: Option<String>,
    /// For command-refused: the command and what was wrong with it.
    pub command: Option<String>,
    pub problem: Option<String>,
    /// For follow-up-opened: the closed case (`CASE-7`).
    pub closed: Option<String>,
    /// The subject of the mail being answered.
    pub your_subject: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CaseLine {
    pub token: String,
    pub subject: String,
    pub status: String,
    pub role: String,
    pub updated_at: String,
    /// The recipient's page of this case, when links can be made (else empty).
    pub page: String,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct Links {
    /// Write to the case (subject with the token).
    pub reply: String,
    pub accept: String,
    pub reject: String,
    pub unwatch: String,
    /// Ask for one's list of cases.
    pub cases: String,
    /// The recipient's personal case page (`{base_url}/case/{token}`), for participants;
    /// empty when there is none (staff, no link secret configured).
    pub case_page: String,
    /// The recipient's "My cases" page, when links can be made.
    pub my_cases: String,
    /// Until when the personal links work (`31 January 2030`); empty without links.
    pub valid_until: String,
}

// ---------------------------------------------------------------------------------------
// Sample data for the start-up check: every kind, every audience, with and without the
// optional parts, so that every branch a real notification can take is rendered once.

const SAMPLE_ROLES: &[&str] = &["requester", "contact", "watcher", "staff", "sender"];

fn samples(kind: &'static str) -> Vec<View> {
    let mut out = Vec::new();
    for role in SAMPLE_ROLES {
        for full in [true, false] {
            out.push(sample(kind, role, full, true));
            if CASELESS_KINDS.contains(&kind) {
                out.push(sample(kind, role, full, false));
            }
        }
    }
    out
}

fn sample(kind: &'static str, role: &'static str, full: bool, with_case: bool) -> View {
    let text = |s: &str| s.to_string();
    let maybe = |s: &str| full.then(|| s.to_string());
    let case = with_case.then(|| CaseView {
        token: text("CASE-42"),
        number: 42,
        subject: text("Printer <on fire> & smoking"),
        status: text("Open"),
        impact: text("Medium"),
        account: maybe("Customer Inc"),
        environment: maybe("Production"),
        description: text("The printer is on fire.\nPlease help."),
        requester: maybe("jane@customer.example"),
        contact: maybe("jane@customer.example"),
        opened_at: text("2026-01-01T09:00:00.000Z"),
        updated_at: text("2026-01-02T10:00:00.000Z"),
        follows_up: maybe("CASE-7"),
    });
    let links = if with_case {
        Links {
            reply: text("mailto:support@example.com?subject=Re%3A%20%5BCASE-42%5D"),
            accept: text("mailto:support@example.com?subject=Re%3A%20%5BCASE-42%5D%20%23accept"),
            reject: text("mailto:support@example.com?subject=Re%3A%20%5BCASE-42%5D%20%23reject"),
            unwatch: text("mailto:support@example.com?subject=Re%3A%20%5BCASE-42%5D%20%23unwatch"),
            cases: text("mailto:support@example.com?subject=%23cases"),
            case_page: if full { text("https://support.example.com/case/abc") } else { String::new() },
            my_cases: if full { text("https://support.example.com/cases/abc") } else { String::new() },
            valid_until: if full { text("31 January 2030") } else { String::new() },
        }
    } else {
        Links {
            cases: text("mailto:support@example.com?subject=%23cases"),
            my_cases: if full { text("https://support.example.com/cases/abc") } else { String::new() },
            valid_until: if full { text("31 January 2030") } else { String::new() },
            ..Links::default()
        }
    };
    View {
        kind,
        support: Support { address: text("support@example.com"), name: text("Support") },
        recipient: RecipientView {
            address: text("someone@customer.example"),
            role,
            is_staff: role == "staff",
            is_watcher: role == "watcher",
            can_decide: matches!(role, "requester" | "contact"),
            can_add: role != "sender",
        },
        case,
        actor: full.then(|| Person { address: text("ann@support.example.com"), name: text("Ann Analyst") }),
        message: full.then(|| MessageView {
            from: Some(text("ann@support.example.com")),
            kind: text("staff"),
            body: text("Restart the spooler.\n<b>Then</b> try again."),
            attachments: vec![text("log.txt"), text("screen.png"), text("trace.zip")],
            files: sample_files(),
            entry: None,
        }),
        change: STATUS_KINDS.contains(&kind).then(|| Change { from: text("Open"), to: text("Resolved") }),
        field: (kind == "field-changed").then(|| FieldView { name: text("impact"), value: text("High") }),
        notice: NOTICE_KINDS.contains(&kind).then(|| NoticeView {
            reason: maybe("sender-not-participant"),
            explanation: maybe("you do not take part in this case"),
            command: maybe("#frobnicate"),
            problem: maybe("unknown command"),
            closed: maybe("CASE-7"),
            your_subject: maybe("Re: [CASE-42] Printer"),
        }),
        cases: if full && kind == "case-list" {
            vec![CaseLine {
                token: text("CASE-42"),
                subject: text("Printer"),
                status: text("Open"),
                role: text("requester"),
                updated_at: text("2026-01-02T10:00:00.000Z"),
                page: text("https://support.example.com/case/abc"),
            }]
        } else {
            Vec::new()
        },
        links,
        survey: (kind == "survey").then(|| SurveyView { url: text("https://support.example.com/survey/abc") }),
        closing: (kind == "closing-soon")
            .then(|| ClosingView { on: text("3 May 2026"), at: text("2026-05-03 09:00 UTC") }),
    }
}

/// A file of each kind: an inline image, an attachment, and linked files with and without
/// a link.
fn sample_files() -> Vec<FileView> {
    let file = |name: &str, cid: Option<&str>, attached: bool, link: Option<&str>| FileView {
        name: name.to_string(),
        content_type: "application/octet-stream".into(),
        size: "12 KB".into(),
        cid: cid.map(str::to_string),
        attached,
        link: link.map(str::to_string),
    };
    vec![
        file("screen.png", Some("file1.abc@example.com"), false, None),
        file("log.txt", None, true, None),
        file("trace.zip", None, false, Some("https://support.example.com/file/abc")),
        file("dump.bin", None, false, None),
    ]
}

/// A sample view (for tests and the benchmark).
pub fn sample_view(kind: &'static str) -> View {
    sample(kind, "requester", true, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_three_templates_and_the_builtins_pass_the_sample_check() {
        for kind in KINDS {
            for part in ["subject", "text", "html"] {
                assert!(BUILTIN.iter().any(|(n, _)| *n == format!("{kind}.{part}")), "{kind}.{part}");
            }
        }
        assert_eq!(BUILTIN.len(), KINDS.len() * 3 + 9);
        Templates::load(None).expect("built-in templates render with every sample");
    }

    #[test]
    fn html_escapes_customer_text_and_text_keeps_it() {
        let t = Templates::load(None).unwrap();
        let mut view = sample_view("reply");
        view.message.as_mut().unwrap().body = "<script>alert('x')</script> & \"quotes\"".into();
        let r = t.render(&view).unwrap();
        assert!(!r.html.contains("<script>"), "{}", r.html);
        assert!(r.html.contains("&lt;script&gt;"), "{}", r.html);
        assert!(r.html.contains("Printer &lt;on fire&gt; &amp; smoking"), "{}", r.html);
        assert!(r.text.contains("<script>alert('x')</script> & \"quotes\""), "{}", r.text);
        assert_eq!(t.render_subject(&view).unwrap(), "Printer <on fire> & smoking", "subjects are text, not HTML");
    }

    #[test]
    fn an_override_replaces_one_file_and_a_broken_one_fails_at_load_with_its_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("reply.subject.hbs"), "New answer: {{case.subject}}").unwrap();
        let t = Templates::load(Some(dir.path())).unwrap();
        assert_eq!(t.overridden, ["reply.subject"]);
        assert_eq!(t.render_subject(&sample_view("reply")).unwrap(), "New answer: Printer <on fire> & smoking");

        // A misspelt variable, in an output and in a condition: strict mode refuses both.
        for broken in ["{{case.subjcet}}", "{{#if case.is_urgent}}!{{/if}}", "{{#unless nothing}}x{{/unless}}"] {
            std::fs::write(dir.path().join("reply.subject.hbs"), broken).unwrap();
            let err = Templates::load(Some(dir.path())).unwrap_err().to_string();
            assert!(err.contains("template reply"), "{broken}: {err}");
        }
        // A syntax error names the file.
        std::fs::write(dir.path().join("reply.subject.hbs"), "{{#if case}}unclosed").unwrap();
        let err = Templates::load(Some(dir.path())).unwrap_err().to_string();
        assert!(err.contains("reply.subject.hbs"), "{err}");
        // Guarded access to a value that may be null is fine.
        std::fs::write(dir.path().join("reply.subject.hbs"), "{{#if actor}}{{actor.name}}{{/if}}").unwrap();
        Templates::load(Some(dir.path())).unwrap();
        // Unguarded access to one that may be null is not, nor to one only other kinds have.
        for unguarded in ["{{actor.name}}", "{{notice.reason}}", "{{change.to}}"] {
            std::fs::write(dir.path().join("reply.subject.hbs"), unguarded).unwrap();
            assert!(Templates::load(Some(dir.path())).is_err(), "{unguarded}");
        }
    }

    #[test]
    fn a_misspelt_override_file_name_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("replies.text.hbs"), "x").unwrap();
        let err = Templates::load(Some(dir.path())).unwrap_err().to_string();
        assert!(err.contains("replies.text.hbs overrides no template"), "{err}");
        std::fs::write(dir.path().join("README.md"), "not a template").unwrap();
        std::fs::remove_file(dir.path().join("replies.text.hbs")).unwrap();
        Templates::load(Some(dir.path())).unwrap();
    }

    #[test]
    fn text_is_tidied() {
        assert_eq!(tidy_text("\n\na  \n\n\n\nb\n\n\n"), "a\n\nb\n");
    }
}
