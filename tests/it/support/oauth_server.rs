//! An OAuth2 authorization server on 127.0.0.1 for the sign-in tests, written for them:
//! the token endpoint (client credentials, refresh token with strict rotation,
//! authorization code with PKCE S256, JWT bearer with RS256 signatures checked against
//! the registered public key), an authorization endpoint that answers at once as a person
//! would (accept, or `decision=deny`), and RFC 7662 introspection for Dovecot's `oauth2`
//! passdb.
//!
//! It runs in the test process on a thread of its own (axum on a current-thread runtime),
//! so tests change it and read its counters directly: revoke a client, forget every
//! access token, count token requests and introspections. Stopped on drop.

use std::collections::HashMap;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::State as Shared;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use base64::Engine as _;
use rand::Rng;
use sha2::{Digest, Sha256};

/// A registered application.
#[derive(Clone, Debug)]
struct Client {
    /// `None`: a public client (no secret), as desktop apps are.
    secret: Option<String>,
    /// Whom its client-credentials tokens are for.
    username: String,
    revoked: bool,
}

#[derive(Clone, Debug)]
struct Issued {
    username: String,
    client: String,
    expires: Instant,
}

#[derive(Clone, Debug)]
struct Code {
    client: String,
    redirect_uri: String,
    challenge: String,
    username: String,
}

/// One request to the token endpoint, as counted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRequest {
    pub grant: String,
    pub client: String,
    /// `ok`, or the OAuth2 error answered.
    pub outcome: String,
}

#[derive(Default)]
struct State {
    token_url: String,
    lifetime: Duration,
    clients: HashMap<String, Client>,
    /// client_email → public key (PEM).
    service_accounts: HashMap<String, String>,
    tokens: HashMap<String, Issued>,
    /// refresh token → (client, username)
    refresh: HashMap<String, (String, String)>,
    codes: HashMap<String, Code>,
    requests: Vec<TokenRequest>,
    /// Every access token ever issued, kept after they are forgotten.
    all_issued: Vec<String>,
    introspections: u64,
    pkce_verified: u64,
}

pub struct AuthServer {
    port: u16,
    state: Arc<Mutex<State>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl AuthServer {
    /// Starts the server (tokens live an hour until [`AuthServer::set_lifetime`]).
    pub fn start() -> AuthServer {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind the authorization server");
        listener.set_nonblocking(true).expect("non-blocking listener");
        let port = listener.local_addr().expect("local address").port();
        let state = Arc::new(Mutex::new(State {
            token_url: format!("http://127.0.0.1:{port}/token"),
            lifetime: Duration::from_secs(3600),
            ..State::default()
        }));
        let app = Router::new()
            .route("/token", post(token))
            .route("/introspect", post(introspect))
            .route("/authorize", get(authorize))
            .with_state(Arc::clone(&state));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("authorization server runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        AuthServer { port, state, stop: Some(stop), thread: Some(thread) }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn token_url(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }

    pub fn authorize_url(&self) -> String {
        format!("http://127.0.0.1:{}/authorize", self.port)
    }

    pub fn introspection_url(&self) -> String {
        format!("http://127.0.0.1:{}/introspect", self.port)
    }

    /// How long access tokens issued from now on live (and what `expires_in` says).
    pub fn set_lifetime(&self, lifetime: Duration) {
        self.state().lifetime = lifetime;
    }

    /// Registers an application whose client-credentials tokens are for `username`.
    pub fn register_client(&self, id: &str, secret: Option<&str>, username: &str) {
        let client = Client { secret: secret.map(str::to_owned), username: username.to_owned(), revoked: false };
        self.state().clients.insert(id.to_owned(), client);
    }

    /// Registers a service account (its `client_email`) with the public half of its key.
    pub fn register_service_account(&self, email: &str, public_key_pem: &str) {
        self.state().service_accounts.insert(email.to_owned(), public_key_pem.to_owned());
    }

    /// A refresh token of `client` for `username`, as a past authorization would have left.
    pub fn issue_refresh_token(&self, client: &str, username: &str) -> String {
        let token = random("rt");
        self.state().refresh.insert(token.clone(), (client.to_owned(), username.to_owned()));
        token
    }

    /// Whether the endpoint would still take `token` (rotation retires each used one).
    pub fn refresh_token_valid(&self, token: &str) -> bool {
        self.state().refresh.contains_key(token)
    }

    /// The refresh tokens the server holds for `client`.
    pub fn refresh_tokens_of(&self, client: &str) -> Vec<String> {
        self.state().refresh.iter().filter(|(_, (c, _))| c == client).map(|(t, _)| t.clone()).collect()
    }

    /// The application is revoked (its secret deleted): its tokens stop working at once
    /// and every further request is answered `invalid_client`.
    pub fn revoke_client(&self, id: &str) {
        let mut state = self.state();
        if let Some(client) = state.clients.get_mut(id) {
            client.revoked = true;
        }
        state.tokens.retain(|_, issued| issued.client != id);
        state.refresh.retain(|_, (client, _)| client != id);
    }

    /// Every access token issued so far stops working before its time (as after a
    /// password reset): a client still holding one must fetch another.
    pub fn forget_access_tokens(&self) {
        self.state().tokens.clear();
    }

    /// Every request to the token endpoint so far.
    pub fn token_requests(&self) -> Vec<TokenRequest> {
        self.state().requests.clone()
    }

    /// Every access token issued so far (to check that none reaches a log).
    pub fn issued_tokens(&self) -> Vec<String> {
        self.state().all_issued.clone()
    }

    /// Requests of `client` so far.
    pub fn token_requests_of(&self, client: &str) -> usize {
        self.state().requests.iter().filter(|r| r.client == client).count()
    }

    /// How often Dovecot asked whether a token is good (once per login).
    pub fn introspections(&self) -> u64 {
        self.state().introspections
    }

    /// Authorization codes exchanged with a PKCE verifier that matched the challenge.
    pub fn pkce_verified(&self) -> u64 {
        self.state().pkce_verified
    }
}

impl Drop for AuthServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn random(prefix: &str) -> String {
    let text: String =
        rand::thread_rng().sample_iter(&rand::distributions::Alphanumeric).take(32).map(char::from).collect();
    format!("{prefix}-{text}")
}

fn json(status: StatusCode, body: serde_json::Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// An OAuth2 error answer (RFC 6749 §5.2).
struct Refusal {
    status: StatusCode,
    error: String,
    description: String,
}

impl Refusal {
    fn into_response(self) -> Response {
        json(self.status, serde_json::json!({ "error": self.error, "error_description": self.description }))
    }
}

/// Whom a granted token is for, and the refresh token that comes with it.
type Granted = Result<(String, Option<String>), Refusal>;

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Refusal {
    Refusal { status, error: error.to_owned(), description: description.to_owned() }
}

/// The client's id and secret, from HTTP Basic or the form.
fn client_auth(headers: &HeaderMap, form: &HashMap<String, String>) -> (String, Option<String>) {
    if let Some(basic) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()?.strip_prefix("Basic ")) {
        if let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(basic) {
            let text = String::from_utf8_lossy(&decoded).into_owned();
            if let Some((id, secret)) = text.split_once(':') {
                return (id.to_owned(), Some(secret.to_owned()));
            }
        }
    }
    (form.get("client_id").cloned().unwrap_or_default(), form.get("client_secret").cloned())
}

async fn token(
    Shared(state): Shared<Arc<Mutex<State>>>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
    let grant = form.get("grant_type").cloned().unwrap_or_default();
    let (client_id, secret) = client_auth(&headers, &form);
    let result = match grant.as_str() {
        "urn:ietf:params:oauth:grant-type:jwt-bearer" => jwt_bearer(&state, &form),
        _ => check_client(&state, &client_id, secret.as_deref()).and_then(|client| match grant.as_str() {
            "client_credentials" if client.secret.is_some() => Ok((client.username.clone(), None)),
            "refresh_token" => refresh(&mut state, &client_id, &form),
            "authorization_code" => code(&mut state, &client_id, &form),
            _ => Err(oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", &grant)),
        }),
    };
    let requester = if client_id.is_empty() { "jwt".to_owned() } else { client_id.clone() };
    match result {
        Ok((username, refresh_token)) => {
            state.requests.push(TokenRequest { grant, client: requester.clone(), outcome: "ok".into() });
            let access = random("at");
            let lifetime = state.lifetime;
            state.all_issued.push(access.clone());
            state
                .tokens
                .insert(access.clone(), Issued { username, client: requester, expires: Instant::now() + lifetime });
            let mut body = serde_json::json!({
                "access_token": access,
                "token_type": "Bearer",
                "expires_in": lifetime.as_secs(),
            });
            if let Some(refresh_token) = refresh_token {
                body["refresh_token"] = refresh_token.into();
            }
            json(StatusCode::OK, body)
        }
        Err(refusal) => {
            state.requests.push(TokenRequest { grant, client: requester, outcome: refusal.error.clone() });
            refusal.into_response()
        }
    }
}

fn check_client(state: &State, id: &str, secret: Option<&str>) -> Result<Client, Refusal> {
    let refused = || oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "client authentication failed");
    let client = state.clients.get(id).ok_or_else(refused)?;
    if client.revoked || (client.secret.is_some() && client.secret.as_deref() != secret) {
        return Err(refused());
    }
    Ok(client.clone())
}

/// A refresh: the token must be the client's; it is retired and a new one issued.
fn refresh(state: &mut State, client: &str, form: &HashMap<String, String>) -> Granted {
    let token = form.get("refresh_token").cloned().unwrap_or_default();
    match state.refresh.get(&token) {
        Some((owner, username)) if owner == client => {
            let username = username.clone();
            state.refresh.remove(&token);
            let rotated = random("rt");
            state.refresh.insert(rotated.clone(), (client.to_owned(), username.clone()));
            Ok((username, Some(rotated)))
        }
        _ => {
            Err(oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "refresh token expired, revoked or already used"))
        }
    }
}

/// An authorization code, checked against its client, redirect and PKCE challenge.
fn code(state: &mut State, client: &str, form: &HashMap<String, String>) -> Granted {
    let invalid = |why: &str| oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", why);
    let field = |k: &str| form.get(k).cloned().unwrap_or_default();
    let code = state.codes.remove(&field("code")).ok_or_else(|| invalid("unknown or used code"))?;
    if code.client != client || code.redirect_uri != field("redirect_uri") {
        return Err(invalid("the code was issued to another client or redirect"));
    }
    let digest = Sha256::digest(field("code_verifier").as_bytes());
    if base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest) != code.challenge {
        return Err(invalid("PKCE verification failed"));
    }
    state.pkce_verified += 1;
    let rotated = random("rt");
    state.refresh.insert(rotated.clone(), (client.to_owned(), code.username.clone()));
    Ok((code.username, Some(rotated)))
}

/// RFC 7523: the JWT's signature checked with the issuer's registered key, its audience
/// (this token endpoint), its times and its subject.
fn jwt_bearer(state: &State, form: &HashMap<String, String>) -> Granted {
    let invalid = |why: String| oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", &why);
    let assertion = form.get("assertion").cloned().unwrap_or_default();
    let header = jsonwebtoken::decode_header(&assertion).map_err(|e| invalid(format!("Invalid JWT: {e}")))?;
    if header.alg != jsonwebtoken::Algorithm::RS256 {
        return Err(invalid(format!("Invalid JWT: algorithm {:?}", header.alg)));
    }
    // The issuer names the key; the signature is checked with that key before anything
    // else in the claims is believed.
    let unverified: serde_json::Value = assertion
        .split('.')
        .nth(1)
        .and_then(|p| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(p).ok())
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(|| invalid("Invalid JWT: unreadable claims".into()))?;
    let issuer = unverified["iss"].as_str().unwrap_or_default();
    let public = state.service_accounts.get(issuer).ok_or_else(|| invalid(format!("Invalid issuer {issuer:?}")))?;
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(public.as_bytes()).map_err(|e| invalid(format!("key: {e}")))?;
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&[state.token_url.as_str()]);
    validation.set_issuer(&[issuer]);
    validation.set_required_spec_claims(&["exp", "iat", "aud", "iss", "sub"]);
    let claims = jsonwebtoken::decode::<serde_json::Value>(&assertion, &key, &validation)
        .map_err(|e| invalid(format!("Invalid JWT Signature or claims: {e}")))?
        .claims;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_secs();
    if claims["iat"].as_u64().unwrap_or(u64::MAX) > now + 60 {
        return Err(invalid("Invalid JWT: issued in the future".into()));
    }
    if claims["scope"].as_str().is_none_or(str::is_empty) {
        return Err(invalid("Invalid JWT: no scope".into()));
    }
    Ok((claims["sub"].as_str().unwrap_or_default().to_owned(), None))
}

async fn introspect(Shared(state): Shared<Arc<Mutex<State>>>, Form(form): Form<HashMap<String, String>>) -> Response {
    let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
    state.introspections += 1;
    let token = form.get("token").cloned().unwrap_or_default();
    match state.tokens.get(&token) {
        Some(issued) if issued.expires > Instant::now() => {
            json(StatusCode::OK, serde_json::json!({ "active": true, "username": issued.username }))
        }
        _ => json(StatusCode::OK, serde_json::json!({ "active": false })),
    }
}

/// The authorization endpoint, answering at once as the person at the browser would:
/// consent (a code for `login_hint`), or refusal with `decision=deny`.
async fn authorize(Shared(state): Shared<Arc<Mutex<State>>>, uri: Uri) -> Response {
    let query: HashMap<String, String> =
        url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes()).into_owned().collect();
    let field = |k: &str| query.get(k).cloned().unwrap_or_default();
    let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
    let redirect_uri = field("redirect_uri");
    let client_ok = state.clients.get(&field("client_id")).is_some_and(|c| !c.revoked);
    if !client_ok || !redirect_uri.starts_with("http://127.0.0.1:") {
        return (StatusCode::BAD_REQUEST, "unknown client or redirect").into_response();
    }
    if field("response_type") != "code"
        || field("code_challenge_method") != "S256"
        || field("code_challenge").is_empty()
    {
        return (StatusCode::BAD_REQUEST, "code flow with PKCE S256 only").into_response();
    }
    let mut target = url::Url::parse(&redirect_uri).expect("checked above");
    if field("decision") == "deny" {
        target
            .query_pairs_mut()
            .append_pair("error", "access_denied")
            .append_pair("error_description", "The user declined")
            .append_pair("state", &field("state"));
    } else {
        let code = random("code");
        let issued = Code {
            client: field("client_id"),
            redirect_uri: redirect_uri.clone(),
            challenge: field("code_challenge"),
            username: field("login_hint"),
        };
        state.codes.insert(code.clone(), issued);
        target.query_pairs_mut().append_pair("code", &code).append_pair("state", &field("state"));
    }
    (StatusCode::FOUND, [(header::LOCATION, target.to_string())]).into_response()
}
