//! The routes: token endpoints in each provider's dialect, protected routes, the redirect
//! target and the fallback.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::{Method, StatusCode, Uri, request::Parts};
use axum::response::Response;
use axum::routing::{any, get};
use serde_json::{Value, json};

use crate::auth::{CodeGrant, authorize_endpoint};
use crate::gate::Passed;
use crate::quota::QuotaOutcome;
use crate::state::{AccessGrant, AccessToken, Invalid, RefreshGrant, RefreshToken, Shared};
use crate::wire::{
    Basic, JsonBody, OAuthError, Params, accepts_json, basic_credentials, bearer_token,
    connection_reset, delay_body, forbidden, html_response, json_response, media_type,
    method_not_allowed, oauth_error, parse_form, parse_json_object, raw_json_response,
    request_carries, unauthorized,
};
use crate::{
    BOOKABLE_AUDIENCE, BOOKABLE_SCOPE, BOOKYFLOW_SCOPES, CLIENT_ID, CLIENT_SECRET, Fault,
    MODULE_CLIENT_ID, PUBLIC_CLIENT_ID, Provider, RecordedRequest,
};

/// The largest request body read.
const MAX_BODY: usize = 1 << 20;

const JSON: &str = "application/json";
const FORM: &str = "application/x-www-form-urlencoded";

/// A JWT-shaped string that no route accepts, for fault and redirect-target bodies.
const FAKE_JWT: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJwcm92aWRlci1zaW0iLCJzdWIiOiJub3QtaXNzdWVkIn0.bm90LWEtcmVhbC1zaWduYXR1cmUtbm90LWEtcmVhbC1zaWc";

const HTML_503: &str = "<!DOCTYPE html>\n<html>\n<head><title>503 Service Temporarily Unavailable</title></head>\n<body>\n<center><h1>503 Service Temporarily Unavailable</h1></center>\n<hr><center>provider-sim load balancer</center>\n</body>\n</html>\n";

/// Serves `router` on `listener` until the task is aborted.
pub(crate) async fn serve(listener: tokio::net::TcpListener, router: Router) {
    use axum::serve::ListenerExt as _;
    let listener = listener.tap_io(|tcp| {
        // Best effort: small request/response exchanges should not wait for Nagle.
        let _ = tcp.set_nodelay(true);
    });
    // `serve` only returns on errors it cannot recover from; the simulator then simply
    // stops answering, which the tests notice.
    let _ = axum::serve(listener, router).await;
}

/// All routes.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let mut router = Router::new();
    for p in Provider::ALL {
        router = router.route(
            p.token_path(),
            any(move |State(shared): State<Arc<Shared>>, req: Request| {
                token_endpoint(shared, p, req)
            }),
        );
        if let Some(path) = p.authorize_path() {
            router = router.route(
                path,
                any(move |State(shared): State<Arc<Shared>>, req: Request| {
                    authorize_endpoint(shared, p, req)
                }),
            );
        }
    }
    router
        .route("/bookable/venues", get(bookable_venues))
        .route(
            "/bookingtime/app/v3/{lang}/organization/{organization_id}/show",
            get(bookingtime_show),
        )
        .route("/octorate/reservations", get(octorate_reservations))
        .route("/bookyflow/api/properties", get(bookyflow_properties))
        .route("/generic/api", get(generic_api))
        .route("/redirect-target", any(redirect_target))
        .fallback(not_found)
        .with_state(shared)
}

/// The JSON body of a successful token response, or the error to answer with.
type Outcome = Result<Value, OAuthError>;

fn recorded(parts: &Parts, body: &[u8]) -> RecordedRequest {
    RecordedRequest {
        method: parts.method.as_str().to_owned(),
        path: parts.uri.path().to_owned(),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.to_vec(),
    }
}

async fn token_endpoint(shared: Arc<Shared>, p: Provider, req: Request) -> Response {
    let state = shared.provider(p);
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, MAX_BODY).await;
    let Ok(body) = body else {
        state.count_token_request();
        return oauth_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request",
            "request body too large or unreadable",
        );
    };
    state.record(recorded(&parts, &body));
    state.count_token_request();
    // In flight from here, once counted and recorded, until the response is ready.
    let _in_flight = state.enter();
    if state.gate.pass().await == Passed::TimedOut {
        return oauth_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "token request held too long waiting for concurrent requests (simulated gate)",
        );
    }
    let latency = state.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if parts.method != Method::POST {
        return method_not_allowed("POST");
    }
    match state.next_fault() {
        None => issue(&shared, p, &parts, &body),
        Some(fault) => fault_response(&shared, p, &parts, &body, fault).await,
    }
}

async fn fault_response(
    shared: &Shared,
    p: Provider,
    parts: &Parts,
    body: &[u8],
    fault: Fault,
) -> Response {
    match fault {
        Fault::InternalError => oauth_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "simulated internal server error",
        ),
        Fault::HtmlServiceUnavailable => html_response(StatusCode::SERVICE_UNAVAILABLE, HTML_503),
        Fault::TooManyRequests { retry_after_secs } => {
            let mut resp = oauth_error(
                StatusCode::TOO_MANY_REQUESTS,
                "temporarily_unavailable",
                &format!("rate limit exceeded; retry after {retry_after_secs} seconds"),
            );
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            resp
        }
        Fault::MalformedJson => raw_json_response(
            StatusCode::OK,
            format!(r#"{{"access_token":"{FAKE_JWT}","token_type":"Bearer","expires_in":36"#)
                .into_bytes(),
        ),
        Fault::OversizedBody { bytes } => raw_json_response(StatusCode::OK, oversized(bytes)),
        Fault::SlowBody { delay_ms } => {
            delay_body(
                issue(shared, p, parts, body),
                Duration::from_millis(delay_ms),
            )
            .await
        }
        Fault::Redirect => {
            let mut resp = Response::new(Body::empty());
            *resp.status_mut() = StatusCode::TEMPORARY_REDIRECT;
            let target = format!("{}/redirect-target", shared.base_url);
            if let Ok(location) = HeaderValue::from_str(&target) {
                resp.headers_mut().insert(header::LOCATION, location);
            }
            resp.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            resp
        }
        Fault::ConnectionReset => connection_reset(),
        Fault::InvalidClient => {
            OAuthError::invalid_client("Client authentication failed").into_response()
        }
        Fault::InvalidGrant => {
            OAuthError::invalid_grant("the grant is invalid, expired or revoked (simulated)")
                .into_response()
        }
    }
}

/// A valid-looking JSON token object padded to `bytes` bytes.
fn oversized(bytes: usize) -> Vec<u8> {
    let prefix = format!(
        r#"{{"access_token":"{FAKE_JWT}","token_type":"Bearer","expires_in":3600,"padding":""#
    );
    let suffix = "\"}";
    let pad = bytes.saturating_sub(prefix.len() + suffix.len());
    let mut out = Vec::with_capacity(prefix.len() + pad + suffix.len());
    out.extend_from_slice(prefix.as_bytes());
    out.resize(prefix.len() + pad, b'x');
    out.extend_from_slice(suffix.as_bytes());
    out
}

/// Normal processing of a token request in `p`'s dialect.
fn issue(shared: &Shared, p: Provider, parts: &Parts, body: &[u8]) -> Response {
    let outcome = match p {
        Provider::Bookable | Provider::BookableSandbox | Provider::BookableAuth0 => {
            return bookable_token(shared, p, parts, body);
        }
        Provider::Bookingtime => bookingtime_token(shared, parts, body),
        Provider::Octorate => octorate_token(shared, parts, body),
        Provider::BookyFlow => bookyflow_token(shared, parts, body),
        Provider::Generic => generic_token(shared, parts, body),
    };
    match outcome {
        Ok(body) => json_response(StatusCode::OK, &body),
        Err(err) => err.into_response(),
    }
}

fn require_content_type(parts: &Parts, expected: &str) -> Result<(), OAuthError> {
    if media_type(&parts.headers, header::CONTENT_TYPE).as_deref() == Some(expected) {
        Ok(())
    } else {
        Err(OAuthError::invalid_request(format!(
            "Content-Type must be {expected}"
        )))
    }
}

fn json_params(body: &[u8]) -> Result<Params, OAuthError> {
    match parse_json_object(body) {
        JsonBody::Object(params) => Ok(params),
        JsonBody::BadValue(description) => Err(OAuthError::invalid_request(description)),
        JsonBody::NotAnObject => Err(OAuthError::invalid_request(
            "the body must be a JSON object",
        )),
    }
}

fn form_params(body: &[u8]) -> Result<Params, OAuthError> {
    parse_form(body).map_err(OAuthError::invalid_request)
}

/// A parameter that must be present and non-empty.
fn require<'a>(params: &'a Params, name: &str) -> Result<&'a str, OAuthError> {
    match params.get(name) {
        Some(value) if !value.is_empty() => Ok(value),
        _ => Err(OAuthError::invalid_request(format!("missing {name}"))),
    }
}

/// An optional parameter; empty counts as absent.
fn optional<'a>(params: &'a Params, name: &str) -> Option<&'a str> {
    params
        .get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
}

fn require_client_credentials_grant(params: &Params) -> Result<(), OAuthError> {
    match require(params, "grant_type")? {
        "client_credentials" => Ok(()),
        other => Err(OAuthError::unsupported_grant_type(other)),
    }
}

fn authenticate(client_id: &str, client_secret: &str) -> Result<(), OAuthError> {
    if client_id == CLIENT_ID && client_secret == CLIENT_SECRET {
        Ok(())
    } else {
        Err(OAuthError::invalid_client("Client authentication failed"))
    }
}

fn scopes_of(scope: &str) -> Vec<String> {
    let mut scopes: Vec<String> = Vec::new();
    for s in scope.split_whitespace() {
        if !scopes.iter().any(|known| known == s) {
            scopes.push(s.to_owned());
        }
    }
    scopes
}

fn ok_json(value: &Value) -> Response {
    json_response(StatusCode::OK, value)
}

/// Checks the parameters of a Bookable token request and authenticates its client.
fn bookable_request(params: &Params) -> Result<(), OAuthError> {
    require_client_credentials_grant(params)?;
    let client_id = require(params, "client_id")?;
    let client_secret = require(params, "client_secret")?;
    if params.get("audience").map(String::as_str) != Some(BOOKABLE_AUDIENCE) {
        return Err(OAuthError::invalid_request(format!(
            "audience must be {BOOKABLE_AUDIENCE}"
        )));
    }
    authenticate(client_id, client_secret)
}

/// Bookable: Auth0's client-credentials grant, with its quota headers on successes and on
/// the 429 of a used-up quota.
fn bookable_token(shared: &Shared, p: Provider, parts: &Parts, body: &[u8]) -> Response {
    let params = match require_content_type(parts, JSON).and_then(|()| json_params(body)) {
        Ok(params) => params,
        Err(err) => return err.into_response(),
    };
    if let Err(err) = bookable_request(&params) {
        return err.into_response();
    }
    let client_id = params.get("client_id").map_or("", String::as_str);
    match shared.provider(p).take_quota() {
        QuotaOutcome::Exhausted(snapshot) => {
            let mut resp = oauth_error(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_requests",
                "Global limit has been reached: the client's token quota is used up",
            );
            snapshot.apply(resp.headers_mut(), true);
            resp
        }
        QuotaOutcome::Granted(snapshot) => {
            let issued = shared.issue_access(AccessGrant {
                provider: p,
                client_id,
                audience: BOOKABLE_AUDIENCE,
                scopes: scopes_of(BOOKABLE_SCOPE),
                org: None,
                user: None,
            });
            let mut resp = ok_json(&json!({
                "access_token": issued.token,
                "scope": BOOKABLE_SCOPE,
                "expires_in": issued.expires_in,
                "token_type": "Bearer",
            }));
            snapshot.apply(resp.headers_mut(), false);
            resp
        }
    }
}

/// bookingtime client authentication: the App API client with its secret, or the Module
/// API client with no secret (absent or empty).
fn bookingtime_client(client_id: &str, client_secret: &str) -> Result<(), OAuthError> {
    match client_id {
        CLIENT_ID if client_secret == CLIENT_SECRET => Ok(()),
        MODULE_CLIENT_ID if client_secret.is_empty() => Ok(()),
        _ => Err(OAuthError::invalid_client("Client authentication failed")),
    }
}

/// bookingtime client authentication for the `authorization_code` grant: the App API
/// client with its secret, or a client without a secret (the public client).
fn bookingtime_code_client(client_id: &str, client_secret: &str) -> Result<(), OAuthError> {
    match client_id {
        CLIENT_ID if client_secret == CLIENT_SECRET => Ok(()),
        PUBLIC_CLIENT_ID | MODULE_CLIENT_ID if client_secret.is_empty() => Ok(()),
        _ => Err(OAuthError::invalid_client("Client authentication failed")),
    }
}

/// The `invalid_grant` for a refresh token that is no good; a replaced (rotated-out) token
/// presented again revokes its chain.
fn refresh_invalid(shared: &Shared, record: &RefreshToken, why: Invalid) -> OAuthError {
    match why {
        Invalid::Expired => OAuthError::invalid_grant("refresh token expired"),
        Invalid::Revoked => OAuthError::invalid_grant("refresh token revoked"),
        Invalid::Rotated => {
            shared.revoke_family(record.family);
            OAuthError::invalid_grant(
                "refresh token was already replaced; reuse detected, its chain is revoked",
            )
        }
    }
}

/// Looks up a refresh token presented to `p`: a token of another provider is unknown.
fn presented_refresh(
    shared: &Shared,
    p: Provider,
    token: &str,
) -> Result<RefreshToken, OAuthError> {
    let Some((record, validity)) = shared
        .refresh_token(token)
        .filter(|(record, _)| record.provider == p)
    else {
        return Err(OAuthError::invalid_grant("unknown refresh token"));
    };
    match validity {
        Ok(()) => Ok(record),
        Err(why) => Err(refresh_invalid(shared, &record, why)),
    }
}

/// With rotation on: replaces `token` by a new one of its chain, or fails if another
/// request replaced it first.
fn rotate(shared: &Shared, record: &RefreshToken, token: &str) -> Result<String, OAuthError> {
    if !shared.rotate_refresh_token(token) {
        return Err(OAuthError::invalid_grant(
            "refresh token was already used (rotation)",
        ));
    }
    let (issued, _) = shared.issue_refresh_token(RefreshGrant {
        provider: record.provider,
        client_id: &record.client_id,
        user: record.user.as_deref(),
        scopes: record.scopes.clone(),
        family: Some(record.family),
    });
    Ok(issued.token)
}

fn bookingtime_token(shared: &Shared, parts: &Parts, body: &[u8]) -> Outcome {
    // The docs send form bodies under a JSON content type: JSON wins only if the body
    // really is a JSON object.
    let json = media_type(&parts.headers, header::CONTENT_TYPE).as_deref() == Some(JSON);
    let params = match if json {
        parse_json_object(body)
    } else {
        JsonBody::NotAnObject
    } {
        JsonBody::Object(params) => params,
        JsonBody::BadValue(description) => return Err(OAuthError::invalid_request(description)),
        JsonBody::NotAnObject => form_params(body)?,
    };
    let client_secret = params.get("client_secret").map_or("", String::as_str);
    match require(&params, "grant_type")? {
        "client_credentials" => {
            let client_id = require(&params, "client_id")?;
            bookingtime_client(client_id, client_secret)?;
            let issued = shared.issue_refresh(client_id);
            Ok(json!({
                "refresh_token": issued.token,
                "token_type": "Bearer",
                "expires_in": issued.expires_in,
            }))
        }
        "authorization_code" => {
            // Like client credentials, the user's grant yields only a 30-day refresh token.
            let client_id = require(&params, "client_id")?;
            let grant = CodeGrant::parse(&params)?;
            bookingtime_code_client(client_id, client_secret)?;
            let code = grant.redeem(shared, Provider::Bookingtime, client_id)?;
            let (issued, family) = shared.issue_refresh_token(RefreshGrant {
                provider: Provider::Bookingtime,
                client_id,
                user: Some(&code.user),
                scopes: code.scopes,
                family: None,
            });
            shared.record_code_tokens(grant.code, family, None);
            Ok(json!({
                "refresh_token": issued.token,
                "token_type": "Bearer",
                "expires_in": issued.expires_in,
            }))
        }
        "refresh_token" => {
            let client_id = require(&params, "client_id")?;
            let refresh_token = require(&params, "refresh_token")?;
            let org = require(&params, "organization_id")?;
            if !client_secret.is_empty() {
                bookingtime_client(client_id, client_secret)?;
            } else if ![CLIENT_ID, MODULE_CLIENT_ID, PUBLIC_CLIENT_ID].contains(&client_id) {
                return Err(OAuthError::invalid_client("Client authentication failed"));
            }
            let record = presented_refresh(shared, Provider::Bookingtime, refresh_token)?;
            if record.client_id != client_id {
                return Err(OAuthError::invalid_grant(
                    "refresh token was issued to another client",
                ));
            }
            if !crate::is_organization(org) {
                return Err(OAuthError::invalid_request("unknown organization"));
            }
            let rotated = if shared.provider(Provider::Bookingtime).rotation() {
                Some(rotate(shared, &record, refresh_token)?)
            } else {
                None
            };
            let issued = shared.issue_access(AccessGrant {
                provider: Provider::Bookingtime,
                client_id,
                audience: "api.bookingtime.com",
                scopes: Vec::new(),
                org: Some(org),
                user: record.user.as_deref(),
            });
            let mut response = json!({
                "access_token": issued.token,
                "token_type": "Bearer",
                "expires_in": issued.expires_in,
            });
            if let Some(rotated) = rotated {
                response["refresh_token"] = json!(rotated);
            }
            Ok(response)
        }
        other => Err(OAuthError::unsupported_grant_type(other)),
    }
}

fn octorate_token(shared: &Shared, parts: &Parts, body: &[u8]) -> Outcome {
    require_content_type(parts, JSON)?;
    if !accepts_json(&parts.headers) {
        return Err(OAuthError::invalid_request(
            "Accept must be application/json",
        ));
    }
    let params = json_params(body)?;
    require_client_credentials_grant(&params)?;
    let client_id = require(&params, "client_id")?;
    let client_secret = require(&params, "client_secret")?;
    authenticate(client_id, client_secret)?;
    let issued = shared.issue_access(AccessGrant {
        provider: Provider::Octorate,
        client_id,
        audience: "octotable-pms",
        scopes: Vec::new(),
        org: None,
        user: None,
    });
    Ok(json!({
        "access_token": issued.token,
        "expires_in": issued.expires_in,
        "type": "Bearer",
    }))
}

fn bookyflow_token(shared: &Shared, parts: &Parts, body: &[u8]) -> Outcome {
    require_content_type(parts, FORM)?;
    let params = form_params(body)?;
    require_client_credentials_grant(&params)?;
    let client_id = require(&params, "client_id")?;
    let client_secret = require(&params, "client_secret")?;
    let scopes = scopes_of(params.get("scope").map_or("", String::as_str));
    if scopes.is_empty() {
        return Err(OAuthError::invalid_request("missing scope"));
    }
    authenticate(client_id, client_secret)?;
    if let Some(unknown) = scopes
        .iter()
        .find(|s| !BOOKYFLOW_SCOPES.contains(&s.as_str()))
    {
        return Err(OAuthError::invalid_scope(format!(
            "unknown scope {unknown}; allowed: read write delete"
        )));
    }
    let issued = shared.issue_access(AccessGrant {
        provider: Provider::BookyFlow,
        client_id,
        audience: "bookyflow",
        scopes,
        org: None,
        user: None,
    });
    Ok(json!({
        "access_token": issued.token,
        "token_type": "Bearer",
        "expires_in": issued.expires_in,
    }))
}

/// A client at the Generic token endpoint.
enum GenericClient {
    /// Authenticated with [`CLIENT_SECRET`] (HTTP Basic or body).
    Confidential(String),
    /// [`PUBLIC_CLIENT_ID`], identified by `client_id` alone (no secret anywhere).
    Public,
}

impl GenericClient {
    fn id(&self) -> &str {
        match self {
            GenericClient::Confidential(id) => id,
            GenericClient::Public => PUBLIC_CLIENT_ID,
        }
    }
}

/// Identifies and authenticates the client of a Generic token request.
fn generic_client(parts: &Parts, params: &Params) -> Result<GenericClient, OAuthError> {
    let body_id = optional(params, "client_id");
    let body_secret = optional(params, "client_secret");
    let (client_id, client_secret) = match basic_credentials(&parts.headers) {
        Basic::Malformed => {
            return Err(OAuthError::invalid_client(
                "malformed HTTP Basic credentials",
            ));
        }
        Basic::Credentials(id, secret) => {
            if body_id.is_some_and(|b| b != id) {
                return Err(OAuthError::invalid_request(
                    "client_id in the body conflicts with the Authorization header",
                ));
            }
            if body_secret.is_some_and(|b| b != secret) {
                return Err(OAuthError::invalid_request(
                    "client_secret in the body conflicts with the Authorization header",
                ));
            }
            (id, secret)
        }
        Basic::Absent => match (body_id, body_secret) {
            (Some(id), Some(secret)) => (id.to_owned(), secret.to_owned()),
            (None, _) => return Err(OAuthError::invalid_client("missing client authentication")),
            (Some(PUBLIC_CLIENT_ID), None) => return Ok(GenericClient::Public),
            (Some(_), None) => return Err(OAuthError::invalid_client("missing client_secret")),
        },
    };
    authenticate(&client_id, &client_secret)?;
    Ok(GenericClient::Confidential(client_id))
}

fn generic_token(shared: &Shared, parts: &Parts, body: &[u8]) -> Outcome {
    require_content_type(parts, FORM)?;
    let params = form_params(body)?;
    match require(&params, "grant_type")? {
        "client_credentials" => generic_client_credentials(shared, parts, &params),
        "authorization_code" => generic_authorization_code(shared, parts, &params),
        "refresh_token" => generic_refresh(shared, parts, &params),
        other => Err(OAuthError::unsupported_grant_type(other)),
    }
}

fn generic_client_credentials(shared: &Shared, parts: &Parts, params: &Params) -> Outcome {
    let client_id = match generic_client(parts, params)? {
        GenericClient::Confidential(id) => id,
        // A public client cannot keep a secret, so it gets no token of its own.
        GenericClient::Public => {
            return Err(OAuthError::invalid_client("missing client_secret"));
        }
    };
    let scope = optional(params, "scope");
    let issued = shared.issue_access(AccessGrant {
        provider: Provider::Generic,
        client_id: &client_id,
        audience: optional(params, "audience").unwrap_or("generic"),
        scopes: scope.map(scopes_of).unwrap_or_default(),
        org: None,
        user: None,
    });
    let mut response = json!({
        "access_token": issued.token,
        "token_type": "Bearer",
        "expires_in": issued.expires_in,
    });
    if let Some(scope) = scope {
        response["scope"] = json!(scope);
    }
    Ok(response)
}

/// The Generic user's token response: access token, refresh token (if any), scope.
fn user_token_response(
    access: crate::state::Issued,
    refresh: Option<String>,
    scopes: &[String],
) -> Value {
    let mut response = json!({
        "access_token": access.token,
        "token_type": "Bearer",
        "expires_in": access.expires_in,
    });
    if let Some(refresh) = refresh {
        response["refresh_token"] = json!(refresh);
    }
    if !scopes.is_empty() {
        response["scope"] = json!(scopes.join(" "));
    }
    response
}

fn generic_authorization_code(shared: &Shared, parts: &Parts, params: &Params) -> Outcome {
    let grant = CodeGrant::parse(params)?;
    let client = generic_client(parts, params)?;
    let code = grant.redeem(shared, Provider::Generic, client.id())?;
    let access = shared.issue_access(AccessGrant {
        provider: Provider::Generic,
        client_id: client.id(),
        audience: "generic",
        scopes: code.scopes.clone(),
        org: None,
        user: Some(&code.user),
    });
    let (refresh, family) = shared.issue_refresh_token(RefreshGrant {
        provider: Provider::Generic,
        client_id: client.id(),
        user: Some(&code.user),
        scopes: code.scopes.clone(),
        family: None,
    });
    shared.record_code_tokens(grant.code, family, Some(access.token.clone()));
    Ok(user_token_response(
        access,
        Some(refresh.token),
        &code.scopes,
    ))
}

fn generic_refresh(shared: &Shared, parts: &Parts, params: &Params) -> Outcome {
    let refresh_token = require(params, "refresh_token")?;
    let client = generic_client(parts, params)?;
    let record = presented_refresh(shared, Provider::Generic, refresh_token)?;
    if record.client_id != client.id() {
        return Err(OAuthError::invalid_grant(
            "refresh token was issued to another client",
        ));
    }
    // RFC 6749 §6: a narrower scope may be asked for, never a wider one.
    let scopes = match optional(params, "scope") {
        None => record.scopes.clone(),
        Some(scope) => {
            let asked = scopes_of(scope);
            if let Some(extra) = asked.iter().find(|s| !record.scopes.contains(s)) {
                return Err(OAuthError::invalid_scope(format!(
                    "scope {extra} was not granted"
                )));
            }
            asked
        }
    };
    let rotated = if shared.provider(Provider::Generic).rotation() {
        Some(rotate(shared, &record, refresh_token)?)
    } else {
        None
    };
    let access = shared.issue_access(AccessGrant {
        provider: Provider::Generic,
        client_id: client.id(),
        audience: "generic",
        scopes: scopes.clone(),
        org: None,
        user: record.user.as_deref(),
    });
    Ok(user_token_response(access, rotated, &scopes))
}

/// What a protected route made of the `Authorization` header.
enum Presented {
    Missing,
    Unknown,
    Known(AccessToken, Result<(), Invalid>),
}

fn presented(shared: &Shared, headers: &HeaderMap) -> Presented {
    let Some(token) = bearer_token(headers) else {
        return Presented::Missing;
    };
    match shared.access_token(token) {
        Some((record, validity)) => Presented::Known(record, validity),
        None => Presented::Unknown,
    }
}

/// Answers 401 and counts the rejection under `p`.
fn reject(shared: &Shared, p: Provider, description: &str) -> Response {
    shared.provider(p).count_api_rejection();
    unauthorized(description)
}

/// Why a token that is no good was rejected.
fn rejection(validity: Result<(), Invalid>) -> &'static str {
    match validity {
        Err(Invalid::Revoked) => "token revoked",
        _ => "token expired",
    }
}

/// The common check of the protected routes: a valid token issued by `route` (any Bookable
/// mount for Bookable). On failure: the provider to count the rejection under (the issuer
/// of a token the simulator knows, else `route`) and why.
fn authorize(
    shared: &Shared,
    route: Provider,
    headers: &HeaderMap,
) -> Result<AccessToken, (Provider, &'static str)> {
    let issued_here =
        |t: &AccessToken| t.provider == route || (route.is_bookable() && t.provider.is_bookable());
    match presented(shared, headers) {
        Presented::Known(token, Ok(())) if issued_here(&token) => {
            let issuer = shared.provider(token.provider);
            if issuer.rejects_all() {
                issuer.count_forced_rejection();
                return Err((token.provider, "token rejected (simulated)"));
            }
            Ok(token)
        }
        Presented::Known(token, validity) if issued_here(&token) => {
            Err((token.provider, rejection(validity)))
        }
        Presented::Known(..) => Err((route, "token was not issued for this API")),
        Presented::Unknown => Err((route, "Invalid or expired token")),
        Presented::Missing => Err((route, "missing bearer token")),
    }
}

async fn bookable_venues(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let token = match authorize(&shared, Provider::Bookable, &headers) {
        Ok(token) => token,
        Err((p, why)) => return reject(&shared, p, why),
    };
    shared.provider(token.provider).count_api_call();
    ok_json(&json!([
        {
            "id": "venue-0001",
            "name": "The Simulated Bistro",
            "city": "London",
            "covers": 48,
        },
        {
            "id": "venue-0002",
            "name": "Loopback Tavern",
            "city": "Manchester",
            "covers": 32,
        },
    ]))
}

async fn bookingtime_show(
    State(shared): State<Arc<Shared>>,
    Path((_lang, org)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let token = match authorize(&shared, Provider::Bookingtime, &headers) {
        Ok(token) => token,
        Err((p, why)) => return reject(&shared, p, why),
    };
    if token.org.as_deref() != Some(org.as_str()) {
        return reject(
            &shared,
            Provider::Bookingtime,
            "token was issued for another organization",
        );
    }
    shared.provider(Provider::Bookingtime).count_api_call();
    ok_json(&json!({
        "messageList": [],
        "content": {
            "class": "ORGANIZATION",
            "id": org,
            "customId": "",
            "name": format!("Simulated organization {org}"),
            "rootOrganizationFlag": false,
            "blocked": false,
        },
    }))
}

async fn octorate_reservations(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let token = match authorize(&shared, Provider::Octorate, &headers) {
        Ok(token) => token,
        Err((p, why)) => return reject(&shared, p, why),
    };
    shared.provider(token.provider).count_api_call();
    ok_json(&json!({
        "data": [
            { "id": 1001, "status": "CONFIRMED", "guests": 2, "date": "2025-01-15", "time": "19:30" },
            { "id": 1002, "status": "PENDING", "guests": 4, "date": "2025-01-16", "time": "20:00" },
        ],
    }))
}

async fn bookyflow_properties(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let token = match presented(&shared, &headers) {
        Presented::Known(token, Ok(()))
            if token.provider == Provider::BookyFlow
                && shared.provider(Provider::BookyFlow).rejects_all() =>
        {
            shared
                .provider(Provider::BookyFlow)
                .count_forced_rejection();
            return reject(&shared, Provider::BookyFlow, "token rejected (simulated)");
        }
        Presented::Known(token, Ok(())) if token.provider == Provider::BookyFlow => token,
        Presented::Known(token, _) if token.provider == Provider::BookyFlow => {
            return reject(&shared, Provider::BookyFlow, "Invalid or expired token");
        }
        _ => return reject(&shared, Provider::BookyFlow, "Invalid or expired token"),
    };
    if !token.scopes.iter().any(|s| s == "read") {
        shared.provider(Provider::BookyFlow).count_api_rejection();
        return forbidden("Insufficient scope");
    }
    let channel = headers
        .get("x-bookyflow-channel-name")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    shared.provider(Provider::BookyFlow).count_api_call();
    ok_json(&json!({
        "properties": [
            { "uid": "prop-0001", "name": "Simulated Lodge", "rooms": 12 },
            { "uid": "prop-0002", "name": "Loopback Suites", "rooms": 30 },
        ],
        "channel": channel,
    }))
}

async fn generic_api(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let token = match authorize(&shared, Provider::Generic, &headers) {
        Ok(token) => token,
        Err((p, why)) => return reject(&shared, p, why),
    };
    shared.provider(Provider::Generic).count_api_call();
    let mut body = json!({
        "ok": true,
        "client_id": token.client_id,
        "scope": token.scopes.join(" "),
    });
    if let Some(user) = token.user {
        body["user"] = json!(user);
    }
    ok_json(&body)
}

async fn redirect_target(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, MAX_BODY)
        .await
        .unwrap_or_default();
    shared.record_redirect_hit(request_carries(&parts, &body, CLIENT_SECRET));
    // Looks like every dialect's success, so a client that wrongly follows the redirect
    // "succeeds" and the test notices through the recorded hit.
    ok_json(&json!({
        "access_token": FAKE_JWT,
        "refresh_token": FAKE_JWT,
        "token_type": "Bearer",
        "type": "Bearer",
        "expires_in": 3600,
    }))
}

async fn not_found(uri: Uri) -> Response {
    oauth_error(
        StatusCode::NOT_FOUND,
        "not_found",
        &format!("no route for {}", uri.path()),
    )
}
