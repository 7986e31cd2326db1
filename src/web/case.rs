//! A person's case page, "My cases" and downloads (see [`super::case_page`] for the HTML):
//!
//! - `GET /case/{token}` shows the case to the person the link was made for, as long as
//!   they take part in it (requester, contact or watcher): removed, the link stops working.
//! - `POST /case/{token}` takes one action (`accept`, `reject` with `reason`, `close`,
//!   `watch` with `address`, `unwatch`) through the same path as the command by mail:
//!   [`request::plan`] (workflow and permission table), [`apply::apply`] in one unit of
//!   work with its audit records, then [`consequences::follow`] for the notifications. A
//!   refused action changes nothing, is audited, and the page says why.
//! - `GET /cases/{token}` lists the person's cases (`?status=` filters).
//! - `GET /file/{token}` sends one attachment to the person the link was made for: staff
//!   any, the people of a case the files of its public thread.

use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Response};
use axum::Form;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::case_page::{self as page, Allowed, CasePage, EntryView, FileLink, Said};
use super::{check_origin, html, problem, server_error, WebState};
use crate::address::Address;
use crate::authorize;
use crate::case::{AuditAction, Event, MessageKind, Outcome, ParticipantRole, Status};
use crate::config::Config;
use crate::consequences;
use crate::decide::request::{self, Request};
use crate::decide::{CaseFacts, CaseRef, Plan};
use crate::links::Signer;
use crate::signed::{self, Claims, TokenError};
use crate::store::apply::{self, Journal};
use crate::store::db::{Db, TxMode};
use crate::store::records::{self, PublicEntry, PublicThread};
use crate::store::unit::AuditRecord;
use crate::store::{cases as case_store, snapshot, Store};
use crate::workflow::{Action, Refusal};

/// Thread entries a case page shows after the opening one (the newest).
const THREAD_MAX: usize = 200;
/// Cases "My cases" lists.
const MY_CASES_MAX: usize = 500;

/// What the store holds for a case page.
struct Loaded {
    facts: CaseFacts,
    thread: PublicThread,
}

/// What a case-page token found.
enum Found {
    Page(Box<Loaded>),
    /// The case exists, but the person no longer takes part in it.
    Gone {
        subject: String,
    },
    Unknown,
}

fn load(conn: Db<'_>, case: i64, person: &Address) -> anyhow::Result<Found> {
    let Some(facts) = snapshot::case_facts(conn, case)? else { return Ok(Found::Unknown) };
    if !facts.participants.iter().any(|(a, _)| a == person) {
        return Ok(Found::Gone { subject: facts.row.subject });
    }
    let thread = records::public_thread(conn, case, THREAD_MAX)?;
    Ok(Found::Page(Box::new(Loaded { facts, thread })))
}

pub(super) async fn show(State(state): State<WebState>, Path(token): Path<String>) -> Response {
    let claims = match verify(&state, &signed::CASE_PAGE, &token) {
        Ok(c) => c,
        Err(response) => return *response,
    };
    let (case, person) = (claims.id, claims.address.clone());
    let found = state.with_db(TxMode::Read, move |conn| load(conn, case, &person)).await;
    match found {
        Ok(found) => respond(&state, &token, &claims, found, None, &Typed::default()),
        Err(e) => server_error(e),
    }
}

/// What was typed into the forms, shown again when an action was refused.
#[derive(Debug, Clone, Default)]
struct Typed {
    reason: String,
    addresses: String,
}

/// The page for what a token found: the case page (with what was just done, or why not,
/// and the status code that goes with it), or why there is none.
fn respond(
    state: &WebState,
    token: &str,
    claims: &Claims,
    found: Found,
    said: Option<(StatusCode, Said)>,
    typed: &Typed,
) -> Response {
    let config = state.config();
    let label = config.case_token(claims.id);
    match found {
        Found::Unknown => unknown_link(),
        Found::Gone { subject } => {
            tracing::info!(case = claims.id, person = %claims.address, "Case page refused: no longer a participant");
            let subject = crate::notify::display_subject(config, &subject);
            (StatusCode::FORBIDDEN, Html(page::left(&label, &subject, false))).into_response()
        }
        Found::Page(loaded) => {
            let (status, said) = match said {
                Some((status, said)) => (status, Some(said)),
                None => (StatusCode::OK, None),
            };
            (status, Html(render(state, token, claims, &loaded, said, typed))).into_response()
        }
    }
}

/// The case page itself.
fn render(
    state: &WebState,
    token: &str,
    claims: &Claims,
    loaded: &Loaded,
    said: Option<Said>,
    typed: &Typed,
) -> String {
    let config = state.config();
    let signer = Signer::until(config, state.secret(), claims.expires);
    let person = &claims.address;
    let facts = &loaded.facts;
    let entry = |e: &PublicEntry| EntryView {
        kind: e.kind,
        from: e.from.clone(),
        at: e.created_at.clone(),
        body: e.body.clone(),
        files: e
            .files
            .iter()
            .map(|f| FileLink {
                name: f.filename.clone(),
                size: html::human_size(f.size),
                href: format!("../file/{}", signer.download_token(f.id, person)),
            })
            .collect(),
    };
    let label = config.case_token(facts.row.id);
    let subject = crate::notify::display_subject(config, &facts.row.subject);
    let form_tag = signed::form_tag(state.secret(), &signed::CASE_PAGE, token);
    let my_cases = format!("../cases/{}", signed::sign(state.secret(), &signed::MY_CASES, 0, person, claims.expires));
    let support = config.system_addresses[0].to_string();
    let hidden = loaded.thread.later_total.saturating_sub(loaded.thread.later.len());
    page::case_page(&CasePage {
        label: &label,
        subject: &subject,
        status: facts.row.status,
        fields: fields(config, facts),
        opening: loaded.thread.opening.as_ref().map(entry),
        later: loaded.thread.later.iter().map(entry).collect(),
        hidden,
        allowed: allowed(config, person, facts),
        form_tag: &form_tag,
        person: person.as_str(),
        role: role_of(person, facts),
        said,
        reason: &typed.reason,
        addresses: &typed.addresses,
        my_cases: &my_cases,
        support: &support,
        expires_at: claims.expires,
    })
}

/// The details list: the case's fields, its people, its times.
fn fields(config: &Config, facts: &CaseFacts) -> Vec<(&'static str, String)> {
    let row = &facts.row;
    let people = |role| -> Vec<&str> {
        facts.participants.iter().filter(|(_, r)| *r == role).map(|(a, _)| a.as_str()).collect()
    };
    let mut out = vec![("Status", row.status.to_string()), ("Impact", row.impact.to_string())];
    if let Some(a) = &row.account {
        out.push(("Account", a.clone()));
    }
    if let Some(e) = &row.environment {
        out.push(("Environment", e.clone()));
    }
    out.push(("Requested by", people(ParticipantRole::Requester).join(", ")));
    out.push(("Contact", people(ParticipantRole::Contact).join(", ")));
    let watchers = people(ParticipantRole::Watcher);
    out.push(("Watchers", if watchers.is_empty() { "none".into() } else { watchers.join(", ") }));
    out.push(("Opened", html::human_time(&row.created_at)));
    out.push(("Last activity", html::human_time(&row.updated_at)));
    if let Some(linked) = row.linked_case {
        out.push(("Follows up", config.case_token(linked)));
    }
    out
}

/// The actions `person` may take on the case now: the permission table and the status
/// machine say, exactly as for the same command by mail.
fn allowed(config: &Config, person: &Address, facts: &CaseFacts) -> Allowed {
    let standing = authorize::standing(config, person, true, &facts.participants, facts.row.account.as_deref());
    let status = facts.row.status;
    let ok = |action: Action| crate::workflow::transition(status, &action, person, &standing).is_ok();
    // Any address stands for "someone else" here; which one does not change the answer.
    let someone = Address::parse("someone@example.invalid").expect("a valid constant address");
    Allowed {
        accept: ok(Action::Accept),
        reject: ok(Action::Reject { reason: Some("a reason".into()) }),
        close: ok(Action::Close),
        watch: ok(Action::Watch(someone)),
        unwatch: standing.watcher && ok(Action::Unwatch(None)),
    }
}

/// How the page names the person's part in the case (the strongest role).
fn role_of(person: &Address, facts: &CaseFacts) -> &'static str {
    let has = |role| facts.participants.iter().any(|(a, r)| a == person && *r == role);
    if has(ParticipantRole::Requester) {
        "the requester"
    } else if has(ParticipantRole::Contact) {
        "the contact"
    } else {
        "a watcher"
    }
}

// ---------------------------------------------------------------------------------------
// Actions.

/// The form as posted. Every field is optional here so that a missing one becomes a
/// friendly message, not a bare 422 from the extractor.
#[derive(Debug, Deserialize)]
pub(super) struct Posted {
    form: Option<String>,
    action: Option<String>,
    reason: Option<String>,
    address: Option<String>,
}

/// An action asked for on the page, read and checked for shape.
#[derive(Debug, Clone)]
enum Wanted {
    Accept,
    Reject(String),
    Close,
    Watch(Vec<Address>),
    Unwatch,
}

impl Wanted {
    fn actions(&self) -> (Vec<Action>, String) {
        match self {
            Wanted::Accept => (vec![Action::Accept], String::new()),
            // As by mail: the reason is both the command's and the thread entry's text.
            Wanted::Reject(reason) => (vec![Action::Reject { reason: Some(reason.clone()) }], reason.clone()),
            Wanted::Close => (vec![Action::Close], String::new()),
            Wanted::Watch(list) => (list.iter().cloned().map(Action::Watch).collect(), String::new()),
            Wanted::Unwatch => (vec![Action::Unwatch(None)], String::new()),
        }
    }
}

pub(super) async fn act(
    State(state): State<WebState>,
    Path(token): Path<String>,
    headers: HeaderMap,
    posted: Result<Form<Posted>, FormRejection>,
) -> Response {
    let (claims, posted) = match admit(&state, &token, &headers, posted) {
        Ok(admitted) => admitted,
        Err(response) => return *response,
    };
    let typed = Typed {
        reason: posted.reason.clone().unwrap_or_default(),
        addresses: posted.address.clone().unwrap_or_default(),
    };
    let wanted = match read_wanted(&posted) {
        Ok(w) => w,
        Err((status, why)) => {
            let (case, person) = (claims.id, claims.address.clone());
            let found = state.with_db(TxMode::Read, move |conn| load(conn, case, &person)).await;
            return match found {
                Ok(found) => respond(&state, &token, &claims, found, Some((status, Said::Refused(why))), &typed),
                Err(e) => server_error(e),
            };
        }
    };
    let config = state.config().clone();
    let (db_claims, db_wanted) = (claims.clone(), wanted.clone());
    let done = state.with_store(move |store| perform(store, &config, &db_claims, &db_wanted)).await;
    let (acted, found) = match done {
        Ok(done) => done,
        Err(e) => return server_error(e),
    };
    let said = match acted {
        Acted::Done(events) if matches!(wanted, Wanted::Unwatch) => {
            tracing::info!(case = claims.id, person = %claims.address, events = events.len(), "Stopped watching on the case page");
            let config = state.config();
            let subject = match &found {
                Found::Page(l) => l.facts.row.subject.clone(),
                Found::Gone { subject } => subject.clone(),
                Found::Unknown => String::new(),
            };
            let subject = crate::notify::display_subject(config, &subject);
            return Html(page::left(&config.case_token(claims.id), &subject, true)).into_response();
        }
        Acted::Done(events) => (StatusCode::OK, Said::Done(done_text(state.config(), &wanted, &events))),
        Acted::Refused(refusal) => {
            let (status, why) = explain(&refusal, state.config());
            (status, Said::Refused(why))
        }
        Acted::NotThere => return respond(&state, &token, &claims, found, None, &typed),
        Acted::NotWatching => (
            StatusCode::CONFLICT,
            Said::Refused(format!(
                "You do not watch this case, you are {} of it: there is nothing to stop.",
                match &found {
                    Found::Page(l) => role_of(&claims.address, &l.facts),
                    _ => "part",
                }
            )),
        ),
    };
    let typed = if matches!(said.1, Said::Refused(_)) { typed } else { Typed::default() };
    respond(&state, &token, &claims, found, Some(said), &typed)
}

/// Whether a posted action may be looked at: sent from our own page, with a valid token,
/// a readable form, and the form tag of this very link. `Err` is the page that says why
/// not.
fn admit(
    state: &WebState,
    token: &str,
    headers: &HeaderMap,
    posted: Result<Form<Posted>, FormRejection>,
) -> Result<(Claims, Posted), Box<Response>> {
    check_origin(state, headers, "Case page action")?;
    let claims = verify(state, &signed::CASE_PAGE, token)?;
    let Form(posted) = match posted {
        Ok(p) => p,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return Err(Box::new(super::too_large(false)))
        }
        Err(rejection) => {
            tracing::info!(case = claims.id, error = %rejection.body_text(), "Case page action refused: unreadable form");
            return Err(Box::new(problem(
                rejection.status(),
                "What you sent could not be read",
                "Please go back to the case page and send the form again.",
            )));
        }
    };
    let tag_ok = posted
        .form
        .as_deref()
        .is_some_and(|tag| signed::verify_form_tag(state.secret(), &signed::CASE_PAGE, token, tag));
    if !tag_ok {
        tracing::warn!(case = claims.id, "Case page action refused: the form does not belong to this link");
        return Err(Box::new(problem(
            StatusCode::FORBIDDEN,
            "This form does not belong to this page",
            "Nothing was changed. Please open the link in your mail about the case again and use the page it shows.",
        )));
    }
    Ok((claims, posted))
}

/// The action a form asks for, or what is wrong with it (and the status to answer with).
fn read_wanted(posted: &Posted) -> Result<Wanted, (StatusCode, String)> {
    let unclear = || (StatusCode::BAD_REQUEST, "That is not something this page can do.".to_string());
    match posted.action.as_deref().map(str::trim) {
        Some("accept") => Ok(Wanted::Accept),
        Some("close") => Ok(Wanted::Close),
        Some("unwatch") => Ok(Wanted::Unwatch),
        Some("reject") => {
            let reason = posted.reason.as_deref().unwrap_or_default().trim().to_string();
            if reason.chars().count() > page::MAX_REASON_CHARS {
                return Err((
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("Please keep the reason under {} characters.", page::MAX_REASON_CHARS),
                ));
            }
            Ok(Wanted::Reject(reason))
        }
        Some("watch") => read_addresses(posted.address.as_deref().unwrap_or_default()).map(Wanted::Watch),
        _ => Err(unclear()),
    }
}

/// The addresses of the "add watchers" field: separated by commas, semicolons or spaces,
/// each one valid (the first that is not is named).
fn read_addresses(field: &str) -> Result<Vec<Address>, (StatusCode, String)> {
    let refuse = |why: String| Err((StatusCode::UNPROCESSABLE_ENTITY, why));
    if field.chars().count() > page::MAX_ADDRESSES_CHARS {
        return refuse(format!("Please give fewer addresses (at most {} characters).", page::MAX_ADDRESSES_CHARS));
    }
    let mut list: Vec<Address> = Vec::new();
    for word in field.split([',', ';', ' ', '\t', '\r', '\n']).filter(|w| !w.trim().is_empty()) {
        match Address::parse(word) {
            Some(a) if !list.contains(&a) => list.push(a),
            Some(_) => {}
            None => {
                return refuse(format!("\u{201c}{}\u{201d} is not an email address.", crate::parse::one_line(word)))
            }
        }
    }
    if list.is_empty() {
        return refuse("Please give the address of the person to add.".into());
    }
    Ok(list)
}

/// What became of an action.
enum Acted {
    Done(Vec<Event>),
    Refused(Refusal),
    /// The case is gone, or the person no longer takes part: nothing was done.
    NotThere,
    /// `unwatch` from someone who takes part otherwise (the requester): nothing to stop.
    NotWatching,
}

/// Takes the action in one unit of work — the same decision, writes, audit and
/// notifications as the command by mail — then reads the page again.
fn perform(store: &mut Store, config: &Config, claims: &Claims, wanted: &Wanted) -> anyhow::Result<(Acted, Found)> {
    let (case, person) = (claims.id, &claims.address);
    let acted = store.write(true, |unit| {
        let scope = unit.scope();
        let Some(facts) = snapshot::case_facts_to_change(scope.conn, case)? else { return Ok(Some(Acted::NotThere)) };
        if !facts.participants.iter().any(|(a, _)| a == person) {
            return Ok(Some(Acted::NotThere));
        }
        let watches = facts.participants.iter().any(|(a, r)| a == person && *r == ParticipantRole::Watcher);
        if matches!(wanted, Wanted::Unwatch) && !watches {
            return Ok(Some(Acted::NotWatching));
        }
        let standing = authorize::standing(config, person, true, &facts.participants, facts.row.account.as_deref());
        let (actions, text) = wanted.actions();
        let req = Request { actions, text: text.into(), message_id: None, attachments: &[], copied: vec![], channel: "web" };
        let mut plan = Plan::new(Outcome::Command, Some(CaseRef::Existing(case)), None);
        match request::plan(&mut plan, config, &facts, person, &standing, req) {
            Ok(_) => {
                let applied = apply::apply(&scope, &plan, Journal::None)?;
                consequences::follow(&scope, config, applied.events.clone(), None)?;
                tracing::info!(case = %config.case_token(case), person = %person, events = applied.events.len(), "Case page action taken");
                Ok(Some(Acted::Done(applied.events)))
            }
            Err(mut refusals) => {
                let (word, refusal) = refusals.remove(0);
                let detail = format!("web: {word}: {refusal}");
                let record = AuditRecord {
                    mail: None,
                    case: Some(case),
                    actor: Some(person.as_str()),
                    action: AuditAction::CommandRefused,
                    detail: Some(&detail),
                };
                scope.audit(&record)?;
                tracing::info!(case = %config.case_token(case), person = %person, refused = %detail, "Case page action refused");
                Ok(Some(Acted::Refused(refusal)))
            }
        }
    })?;
    let acted = acted.unwrap_or(Acted::NotThere);
    let found = store.db().transaction(TxMode::Read, |db| load(db, case, person))?;
    Ok((acted, found))
}

/// What the page says after an action was taken.
fn done_text(config: &Config, wanted: &Wanted, events: &[Event]) -> String {
    match wanted {
        Wanted::Accept => "You accepted the solution, and the case is closed. Thank you!".into(),
        Wanted::Reject(_) => {
            "You rejected the solution. The case is open again, and our team has been told what is still wrong.".into()
        }
        Wanted::Close => "You closed the case.".into(),
        Wanted::Unwatch => "You no longer watch this case.".into(),
        Wanted::Watch(asked) => {
            let added: Vec<&str> = events
                .iter()
                .filter_map(|e| match e {
                    Event::WatcherAdded { address, .. } => Some(address.as_str()),
                    _ => None,
                })
                .collect();
            let mut text = if added.is_empty() {
                "Nobody was added: everyone you named already takes part in this case (support addresses are never \
                 added as watchers)."
                    .to_string()
            } else {
                format!("Added as watchers: {}. They get a mail about every change of the case.", added.join(", "))
            };
            if asked.len() > config.max_watchers_per_mail {
                text.push_str(&format!(
                    " At most {} addresses are added at once; the others were left out.",
                    config.max_watchers_per_mail
                ));
            }
            text
        }
    }
}

/// Why an action was refused, in the page's words, with the status to answer with.
fn explain(refusal: &Refusal, config: &Config) -> (StatusCode, String) {
    match refusal {
        Refusal::NotAllowed { action, role } => {
            let who = match *action {
                "accept" | "reject" => "its requester or its contact",
                "close" => "its requester, its contact or our support team",
                _ => "people who take part in it",
            };
            let verb = verb(action);
            (StatusCode::FORBIDDEN, format!("You cannot {verb} on this case: only {who} may. You take part as {role}."))
        }
        Refusal::WrongStatus { action, status, .. } => {
            let why = match (*action, status) {
                (_, Status::Closed) => format!(
                    "The case is closed, and closed cases are final. To follow it up, write a new mail to {}.",
                    config.system_addresses[0]
                ),
                ("accept" | "reject", _) => {
                    format!("There is no proposed solution to answer: the case is {status}. Nothing was changed.")
                }
                (action, _) => format!("You cannot {} while the case is {status}.", verb(action)),
            };
            (StatusCode::CONFLICT, why)
        }
        Refusal::ReasonRequired => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "Please tell us what is still wrong: a reason is needed to reject the solution.".into(),
        ),
    }
}

fn verb(action: &str) -> &'static str {
    match action {
        "accept" => "accept the solution",
        "reject" => "reject the solution",
        "close" => "close the case",
        "watch" => "add watchers",
        "unwatch" => "stop watching",
        _ => "do that",
    }
}

// ---------------------------------------------------------------------------------------
// My cases.

pub(super) async fn my_cases(State(state): State<WebState>, Path(token): Path<String>, uri: Uri) -> Response {
    let claims = match verify(&state, &signed::MY_CASES, &token) {
        Ok(c) if c.id == 0 => c,
        Ok(_) => return unknown_link(),
        Err(response) => return *response,
    };
    let filter = uri.query().and_then(status_filter);
    let person = claims.address.clone();
    let found = state.with_db(TxMode::Read, move |conn| Ok(case_store::cases_of(conn, &person, MY_CASES_MAX)?)).await;
    let cases = match found {
        Ok(c) => c,
        Err(e) => return server_error(e),
    };
    let config = state.config();
    let signer = Signer::until(config, state.secret(), claims.expires);
    let total = cases.len();
    let items = cases
        .into_iter()
        .filter(|c| filter.is_none_or(|f| c.status == f))
        .map(|c| page::CaseItem {
            label: config.case_token(c.case),
            subject: crate::notify::display_subject(config, &c.subject),
            status: c.status,
            role: c.role.to_string(),
            updated_at: c.updated_at,
            href: format!("../case/{}", signer.case_token(c.case, &claims.address)),
        })
        .collect();
    let html = page::my_cases(&page::MyCases {
        person: claims.address.as_str(),
        filter,
        items,
        total,
        expires_at: claims.expires,
    });
    Html(html).into_response()
}

/// `status=open` (any case) from a query string; `all`, a missing or an unknown value
/// mean no filter.
fn status_filter(query: &str) -> Option<Status> {
    let value = query.split('&').find_map(|pair| pair.strip_prefix("status="))?;
    value.parse().ok()
}

// ---------------------------------------------------------------------------------------
// Downloads.

pub(super) async fn download(State(state): State<WebState>, Path(token): Path<String>) -> Response {
    let claims = match verify(&state, &signed::DOWNLOAD, &token) {
        Ok(c) => c,
        Err(response) => return *response,
    };
    let config = state.config().clone();
    let db_claims = claims.clone();
    let blobs = state.config().data_dir.join(crate::store::blobs::DIR);
    let found = state
        .with_db(TxMode::Read, move |db| {
            let Some(record) = records::file(db, db_claims.id)? else { return Ok(None) };
            let a = &db_claims.address;
            let staff = config.is_staff(a) || config.is_admin(a) || config.notify.staff_recipients.contains(a);
            let customer = record.kind != MessageKind::Note && case_store::is_participant(db, record.case, a)?;
            if !(staff || customer) {
                return Ok(None);
            }
            // Read here: on PostgreSQL the bytes are a row, on SQLite a file.
            let bytes = crate::store::blobs::read(db, &blobs, &record.file.sha256, record.file.size);
            Ok(Some((record.file, bytes)))
        })
        .await;
    let (file, bytes) = match found {
        Ok(Some(found)) => found,
        Ok(None) => {
            tracing::info!(file = claims.id, person = %claims.address, "Download refused: not this person's file");
            return unknown_link();
        }
        Err(e) => return server_error(e),
    };
    match bytes {
        Ok(bytes) => {
            tracing::info!(file = file.id, person = %claims.address, "File downloaded");
            file_response(&file.filename, &file.content_type, bytes)
        }
        Err(why) => server_error(anyhow::anyhow!(why)),
    }
}

/// Types a browser may be told as they are: they cannot run anything on our origin. Any
/// other file is sent as bytes.
const SAFE_TYPES: &[&str] =
    &["application/pdf", "image/png", "image/jpeg", "image/gif", "image/webp", "text/plain", "text/csv"];

/// A file as a download: always `attachment` (never shown in our origin), in a sandbox,
/// under its name.
fn file_response(name: &str, content_type: &str, bytes: Vec<u8>) -> Response {
    let kind = if SAFE_TYPES.contains(&content_type) { content_type } else { "application/octet-stream" };
    let ascii: String =
        name.chars().map(|c| if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' { c } else { '_' }).collect();
    let encoded: String = name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let disposition = format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}");
    let mut response = bytes.into_response();
    let h = response.headers_mut();
    // Both are ASCII by construction; a name that still fails goes without one.
    if let Ok(v) = HeaderValue::from_str(kind) {
        h.insert(header::CONTENT_TYPE, v);
    }
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&disposition).unwrap_or_else(|_| HeaderValue::from_static("attachment")),
    );
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'none'; sandbox"));
    response
}

// ---------------------------------------------------------------------------------------
// Links.

/// Checks a token made for `purpose`: `Err` is the page for a link that is not valid or
/// has expired.
fn verify(state: &WebState, purpose: &signed::Purpose, token: &str) -> Result<Claims, Box<Response>> {
    match signed::verify(state.secret(), purpose, token, Utc::now()) {
        Ok(claims) => Ok(claims),
        Err(TokenError::Invalid) => {
            tracing::info!("Link refused: not a valid token");
            Err(Box::new(unknown_link()))
        }
        Err(TokenError::Expired(claims)) => {
            tracing::info!(id = claims.id, expired = %claims.expires, "Link refused: expired");
            Err(Box::new(expired_link(state.config(), claims.expires)))
        }
    }
}

fn unknown_link() -> Response {
    problem(
        StatusCode::NOT_FOUND,
        "This link is not valid",
        "The link may have been cut off or changed on its way. Please open it again from your mail, or copy the \
         whole link into your browser.",
    )
}

fn expired_link(config: &Config, at: DateTime<Utc>) -> Response {
    problem(
        StatusCode::GONE,
        "This link has expired",
        &format!(
            "The link worked until {}. Every new mail about your case brings a fresh one; for a list of your cases \
             with links, write to {} with the subject \u{201c}cases\u{201d}.",
            html::human_date(at),
            config.system_addresses[0]
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watcher_addresses_are_read_checked_and_deduplicated() {
        let list = read_addresses("a@x.example, B@x.example;a@x.example\nc@y.example").unwrap();
        let list: Vec<&str> = list.iter().map(Address::as_str).collect();
        assert_eq!(list, ["a@x.example", "b@x.example", "c@y.example"]);
        let (status, why) = read_addresses("a@x.example, not-an-address").unwrap_err();
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(why.contains("not-an-address") && why.contains("not an email address"), "{why}");
        assert!(read_addresses("  , ").is_err());
        assert!(read_addresses(&"a@x.example,".repeat(500)).is_err(), "bounded");
    }

    #[test]
    fn status_filters_are_read_from_the_query() {
        assert_eq!(status_filter("status=open"), Some(Status::Open));
        assert_eq!(status_filter("x=1&status=Resolved"), Some(Status::Resolved));
        assert_eq!(status_filter("status=all"), None);
        assert_eq!(status_filter("status=%3Cscript%3E"), None);
    }

    #[test]
    fn refusals_are_explained_with_a_fitting_status() {
        let config =
            Config::from_toml("system_addresses = [\"support@example.com\"]", std::path::Path::new("/c.toml")).unwrap();
        let (status, why) = explain(&Refusal::NotAllowed { action: "accept", role: "watcher" }, &config);
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(why.contains("requester or its contact") && why.contains("watcher"), "{why}");
        let wrong = Refusal::WrongStatus { action: "accept", status: Status::Open, hint: "" };
        let (status, why) = explain(&wrong, &config);
        assert_eq!(status, StatusCode::CONFLICT);
        assert!(why.contains("no proposed solution"), "{why}");
        let closed = Refusal::WrongStatus { action: "close", status: Status::Closed, hint: "" };
        assert!(explain(&closed, &config).1.contains("support@example.com"));
        assert_eq!(explain(&Refusal::ReasonRequired, &config).0, StatusCode::UNPROCESSABLE_ENTITY);
    }

    #[test]
    fn downloads_never_run_in_our_origin() {
        let r = file_response("évil \"x\".html", "text/html", b"<script>".to_vec());
        let h = r.headers();
        assert_eq!(h[header::CONTENT_TYPE], "application/octet-stream");
        let d = h[header::CONTENT_DISPOSITION].to_str().unwrap();
        assert!(
            d.starts_with("attachment; filename=\"_vil _x_.html\"") && d.contains("filename*=UTF-8''%C3%A9vil"),
            "{d}"
        );
        assert!(h[header::CONTENT_SECURITY_POLICY].to_str().unwrap().contains("sandbox"));
        let pdf = file_response("a.pdf", "application/pdf", Vec::new());
        assert_eq!(pdf.headers()[header::CONTENT_TYPE], "application/pdf");
    }
}
