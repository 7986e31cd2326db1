//! The survey page's handlers: `GET /survey/{token}` shows the form, `POST` records the
//! answer and thanks (see [`super::survey_page`] for the HTML).

use crate::store::db::{Db, TxMode};
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Form;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::survey_page::{self as page, CaseHeading, Values};
use super::{check_origin, html, problem, server_error, too_large, WebState};
use crate::config::Config;
use crate::store::surveys::{self as store, AnswerError, StoredAnswer};
use crate::survey::answer::{Answer, Channel, Score};
use crate::survey::token::{self, Claims, TokenError};

/// What a request found in the database about its (verified) token.
struct Found {
    case_label: String,
    subject: String,
    current: Option<StoredAnswer>,
    expires_at: DateTime<Utc>,
}

/// Looks up the invitation behind verified claims, and the case it is about. `None`
/// when there is none: a genuine signature but no invitation (another installation with
/// the same secret, or a database restored from before the invitation).
fn find(conn: Db<'_>, config: &Config, claims: &Claims) -> anyhow::Result<Option<Found>> {
    let Some(invitation) = store::invitation(conn, claims.case, &claims.recipient)? else {
        return Ok(None);
    };
    if invitation.expires_at != claims.expires {
        return Ok(None);
    }
    let Some(case) = crate::store::cases::case_row(conn, claims.case)? else {
        return Ok(None);
    };
    Ok(Some(Found {
        case_label: config.case_token(case.id),
        // Named as the survey mail names it (token and Re: removed).
        subject: crate::notify::display_subject(config, &case.subject),
        current: store::current_answer(conn, claims.case, &claims.recipient)?,
        expires_at: invitation.expires_at,
    }))
}

pub(super) async fn show(State(state): State<WebState>, Path(token): Path<String>) -> Response {
    let claims = match verify(&state, &token) {
        Ok(c) => c,
        Err(e) => return refused(e),
    };
    let config = state.config().clone();
    let found = match state.with_db(TxMode::Read, move |conn| find(conn, &config, &claims)).await {
        Ok(Some(f)) => f,
        Ok(None) => return unknown_link(),
        Err(e) => return server_error(e),
    };
    let tag = token::form_tag(state.secret(), &token);
    let values = found.current.as_ref().map(|c| Values::from(&c.answer)).unwrap_or_default();
    let html = page::form(&page::Form {
        case: CaseHeading { label: &found.case_label, subject: &found.subject },
        form_tag: &tag,
        values,
        answered_at: found.current.as_ref().map(|c| c.updated_at),
        expires_at: found.expires_at,
        error: None,
    });
    Html(html).into_response()
}

/// The form as posted. Every field is optional here so that a missing one becomes a
/// friendly message, not a bare 422 from the extractor.
#[derive(Debug, Deserialize)]
pub(super) struct Posted {
    form: Option<String>,
    score: Option<String>,
    solved: Option<String>,
    comment: Option<String>,
}

pub(super) async fn answer(
    State(state): State<WebState>,
    Path(token): Path<String>,
    headers: HeaderMap,
    posted: Result<Form<Posted>, FormRejection>,
) -> Response {
    let (claims, posted) = match admit(&state, &token, &headers, posted) {
        Ok(admitted) => admitted,
        Err(response) => return *response,
    };
    let (values, checked) = read_answer(&posted);
    let config = state.config().clone();
    let now = Utc::now();
    let db_claims = claims.clone();
    let to_record = checked.clone().ok();
    let result = state
        .with_db(TxMode::Write, move |conn| {
            let Some(found) = find(conn, &config, &db_claims)? else {
                return Ok(Err(None));
            };
            let Some(answer) = to_record else {
                return Ok(Ok((found, None)));
            };
            match store::record_answer(conn, db_claims.case, &db_claims.recipient, &answer, Channel::Web, now) {
                Ok(recorded) => Ok(Ok((found, Some((answer, recorded))))),
                Err(AnswerError::NotInvited { .. }) => Ok(Err(None)),
                Err(AnswerError::Expired { expires_at, .. }) => Ok(Err(Some(expires_at))),
                Err(AnswerError::Database(e)) => Err(e.into()),
            }
        })
        .await;
    let (found, recorded) = match result {
        Ok(Ok(r)) => r,
        Ok(Err(None)) => return unknown_link(),
        Ok(Err(Some(expired))) => return expired_link(expired),
        Err(e) => return server_error(e),
    };
    let heading = CaseHeading { label: &found.case_label, subject: &found.subject };
    match (recorded, checked) {
        (Some((answer, recorded)), _) => {
            let changed = recorded == store::Recorded::Changed;
            Html(page::thanks(&heading, &answer, changed, &token, found.expires_at)).into_response()
        }
        (None, Err(message)) => {
            let tag = token::form_tag(state.secret(), &token);
            let html = page::form(&page::Form {
                case: heading,
                form_tag: &tag,
                values,
                answered_at: found.current.as_ref().map(|c| c.updated_at),
                expires_at: found.expires_at,
                error: Some(message),
            });
            (StatusCode::UNPROCESSABLE_ENTITY, Html(html)).into_response()
        }
        // `to_record` is `Some` exactly when `checked` is `Ok`.
        (None, Ok(_)) => server_error(anyhow::anyhow!("answer checked but not recorded")),
    }
}

/// Whether a posted answer may be looked at: sent from the survey page itself, with a
/// valid token, a readable form, and the form tag of this very link. `Err` is the page
/// that says why not.
fn admit(
    state: &WebState,
    token: &str,
    headers: &HeaderMap,
    posted: Result<Form<Posted>, FormRejection>,
) -> Result<(Claims, Posted), Box<Response>> {
    check_origin(state, headers, "Survey answer")?;
    let claims = verify(state, token).map_err(|e| Box::new(refused(e)))?;
    let Form(posted) = match posted {
        Ok(p) => p,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => return Err(Box::new(too_large(true))),
        Err(rejection) => {
            tracing::info!(case = claims.case, error = %rejection.body_text(), "Survey answer refused: unreadable form");
            return Err(Box::new(problem(
                rejection.status(),
                "Your answer could not be read",
                "Please go back to the survey page and send the form again.",
            )));
        }
    };
    if !posted.form.as_deref().is_some_and(|tag| token::verify_form_tag(state.secret(), token, tag)) {
        tracing::warn!(case = claims.case, "Survey answer refused: the form does not belong to this link");
        return Err(Box::new(problem(
            StatusCode::FORBIDDEN,
            "This form does not belong to this survey link",
            "Please open the link in the survey mail again and answer on that page.",
        )));
    }
    Ok((claims, posted))
}

/// The values as posted (to show the form again) and the answer they make, or what is
/// missing from it.
fn read_answer(posted: &Posted) -> (Values, Result<Answer, &'static str>) {
    let values = Values {
        score: posted.score.as_deref().and_then(|s| s.trim().parse().ok()),
        solved: match posted.solved.as_deref().map(str::trim) {
            Some("yes") => Some(true),
            Some("no") => Some(false),
            _ => None,
        },
        comment: posted.comment.clone().unwrap_or_default(),
    };
    let checked = match (values.score.and_then(Score::new), values.solved) {
        (Some(score), Some(solved)) => Ok(Answer::new(score, Some(solved), posted.comment.as_deref())),
        (None, _) => Err("Please choose how satisfied you are, from 1 to 5."),
        (Some(_), None) => Err("Please say whether our solution solved your problem."),
    };
    (values, checked)
}

fn verify(state: &WebState, token: &str) -> Result<Claims, TokenError> {
    token::verify(state.secret(), token, Utc::now())
}

/// The page for a token that did not verify.
fn refused(error: TokenError) -> Response {
    match error {
        TokenError::Invalid => {
            tracing::info!("Survey link refused: not a valid token");
            unknown_link()
        }
        TokenError::Expired(claims) => {
            tracing::info!(case = claims.case, expired = %claims.expires, "Survey link refused: expired");
            expired_link(claims.expires)
        }
    }
}

fn unknown_link() -> Response {
    problem(
        StatusCode::NOT_FOUND,
        "This survey link is not valid",
        "The link may have been cut off or changed on its way. Please open it again from the survey mail, \
         or copy the whole link into your browser. You can also answer by replying to the survey mail \
         with a score from 1 to 5.",
    )
}

fn expired_link(at: DateTime<Utc>) -> Response {
    problem(
        StatusCode::GONE,
        "This survey has closed",
        &format!(
            "The survey link expired on {}, so answers are no longer taken. Thank you all the same; \
             if there is something we should know, reply to any mail about your case.",
            html::human_date(at)
        ),
    )
}
