//! Microsoft Entra ID (or any OpenID Connect provider with its shape) through the
//! `openidconnect` crate: a tenant's discovery document and keys (cached, keys refetched
//! on an unknown `kid`), the authorization URL with PKCE, the code exchange, ID token
//! validation, and the refresh grant. Every call has a timeout; redirects are never
//! followed (SSRF).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreAuthenticationFlow, CoreErrorResponseType,
    CoreGenderClaim, CoreJsonWebKey, CoreJsonWebKeySet, CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm, CoreProviderMetadata, CoreRevocableToken, CoreRevocationErrorResponse,
    CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AdditionalClaims, AuthorizationCode, Client, ClientId, ClientSecret, CsrfToken,
    EmptyExtraTokenFields, EndpointMaybeSet, EndpointNotSet, EndpointSet, IdToken, IdTokenClaims,
    IdTokenFields, IdTokenVerifier, IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, RefreshToken, RequestTokenError, Scope, StandardErrorResponse,
    StandardTokenResponse, TokenResponse,
};
use serde::{Deserialize, Serialize};

/// The Entra ID claims the platform reads beyond the standard ones.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AzureClaims {
    /// The directory (Entra tenant) that signed the user in.
    pub tid: Option<String>,
    /// The user's immutable object id in that directory.
    pub oid: Option<String>,
    #[serde(default)]
    pub groups: Option<Vec<String>>,
    /// Groups overage: `{"groups": "src1"}` when the groups did not fit in the token.
    #[serde(rename = "_claim_names", default)]
    pub claim_names: Option<HashMap<String, String>>,
    /// Whether the email's domain is verified by the directory (optional claim).
    #[serde(default)]
    pub xms_edov: Option<serde_json::Value>,
}

impl AdditionalClaims for AzureClaims {}

impl AzureClaims {
    /// The overage indication for groups is present.
    pub fn groups_overage(&self) -> bool {
        self.claim_names
            .as_ref()
            .is_some_and(|names| names.contains_key("groups"))
    }

    /// `Some(false)` when Entra says the email domain is not verified.
    pub fn email_domain_verified(&self) -> Option<bool> {
        match &self.xms_edov {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::Bool(b)) => Some(*b),
            Some(serde_json::Value::String(s)) => Some(s == "1" || s.eq_ignore_ascii_case("true")),
            Some(serde_json::Value::Number(n)) => Some(n.as_i64() == Some(1)),
            Some(_) => Some(false),
        }
    }
}

type AzureIdTokenFields = IdTokenFields<
    AzureClaims,
    EmptyExtraTokenFields,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
type AzureTokenResponse = StandardTokenResponse<AzureIdTokenFields, CoreTokenType>;
type AzureIdToken = IdToken<
    AzureClaims,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
pub type AzureIdTokenClaims = IdTokenClaims<AzureClaims, CoreGenderClaim>;
type AzureClient = Client<
    AzureClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    AzureTokenResponse,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// The scopes asked for besides `openid` (which the crate adds).
pub const SCOPES: [&str; 4] = ["profile", "email", "offline_access", "User.Read"];

#[derive(Debug, thiserror::Error)]
pub enum AzureError {
    /// The provider could not be reached or answered nonsense; retry later.
    #[error("identity provider unavailable: {0}")]
    Unavailable(String),
    /// The tenant's discovery document is not acceptable (e.g. its issuer differs).
    #[error("identity provider configuration is not valid: {0}")]
    Discovery(String),
    /// The provider refused the request (`error` of RFC 6749).
    #[error("identity provider refused the request: {code}")]
    Refused { code: String },
    /// The refresh token or code is no longer valid.
    #[error("the grant is no longer valid")]
    InvalidGrant,
    #[error("ID token rejected: {0}")]
    InvalidIdToken(String),
}

/// The connection settings of one tenant's app registration.
#[derive(Clone)]
pub struct AppRegistration {
    pub provider_tenant_id: String,
    pub client_id: String,
    pub client_secret: Option<String>,
    pub redirect_uri: String,
}

/// Tokens from the token endpoint.
pub struct AzureTokens {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub id_token: Option<String>,
    pub expires_in: Duration,
}

/// What the authorization step needs to keep until the callback.
pub struct Authorization {
    pub url: url::Url,
    pub pkce_verifier: String,
}

struct Cached {
    fetched: Instant,
    metadata: Arc<CoreProviderMetadata>,
}

pub struct Azure {
    http: reqwest::Client,
    authority: String,
    ttl: Duration,
    cache: Mutex<HashMap<String, Cached>>,
}

impl Azure {
    pub fn new(authority: &str, timeout: Duration, ttl: Duration) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()?;
        Ok(Self {
            http,
            authority: authority.trim_end_matches('/').to_owned(),
            ttl,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The tenant-specific issuer: `{authority}/{provider_tenant_id}/v2.0`.
    pub fn issuer(&self, provider_tenant_id: &str) -> String {
        format!("{}/{provider_tenant_id}/v2.0", self.authority)
    }

    /// The tenant's discovery document and keys, fetched (and checked: its issuer must
    /// be exactly the tenant's) or from the cache.
    pub async fn metadata(
        &self,
        provider_tenant_id: &str,
    ) -> Result<Arc<CoreProviderMetadata>, AzureError> {
        let issuer = self.issuer(provider_tenant_id);
        if let Some(cached) = self.cached(&issuer) {
            return Ok(cached);
        }
        self.fetch(&issuer).await
    }

    /// The discovery document fetched now, bypassing the cache (`…/config/validate`).
    pub async fn refresh_metadata(
        &self,
        provider_tenant_id: &str,
    ) -> Result<Arc<CoreProviderMetadata>, AzureError> {
        self.fetch(&self.issuer(provider_tenant_id)).await
    }

    fn cached(&self, issuer: &str) -> Option<Arc<CoreProviderMetadata>> {
        let cache = self.cache.lock().ok()?;
        cache
            .get(issuer)
            .filter(|c| c.fetched.elapsed() < self.ttl)
            .map(|c| c.metadata.clone())
    }

    async fn fetch(&self, issuer: &str) -> Result<Arc<CoreProviderMetadata>, AzureError> {
        let issuer_url =
            IssuerUrl::new(issuer.to_owned()).map_err(|e| AzureError::Discovery(e.to_string()))?;
        let metadata = CoreProviderMetadata::discover_async(issuer_url, &self.http)
            .await
            .map_err(|e| match e {
                openidconnect::DiscoveryError::Request(e) => AzureError::Unavailable(e.to_string()),
                openidconnect::DiscoveryError::Response(status, _, _)
                    if status.is_server_error() =>
                {
                    AzureError::Unavailable(format!("discovery answered {status}"))
                }
                other => AzureError::Discovery(error_chain(&other)),
            })?;
        let metadata = Arc::new(metadata);
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(
                issuer.to_owned(),
                Cached {
                    fetched: Instant::now(),
                    metadata: metadata.clone(),
                },
            );
        }
        Ok(metadata)
    }

    /// The keys again (an ID token named a `kid` the cached set lacks): the cached
    /// metadata gets the new set.
    async fn refetch_keys(&self, issuer: &str) -> Result<Arc<CoreProviderMetadata>, AzureError> {
        let Some(current) = self
            .cache
            .lock()
            .ok()
            .and_then(|c| c.get(issuer).map(|c| c.metadata.clone()))
        else {
            return self.fetch(issuer).await;
        };
        let jwks = CoreJsonWebKeySet::fetch_async(current.jwks_uri(), &self.http)
            .await
            .map_err(|e| AzureError::Unavailable(error_chain(&e)))?;
        let updated = Arc::new((*current).clone().set_jwks(jwks));
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(
                issuer.to_owned(),
                Cached {
                    fetched: Instant::now(),
                    metadata: updated.clone(),
                },
            );
        }
        Ok(updated)
    }

    fn client(
        &self,
        metadata: &CoreProviderMetadata,
        app: &AppRegistration,
    ) -> Result<AzureClient, AzureError> {
        let redirect = RedirectUrl::new(app.redirect_uri.clone())
            .map_err(|e| AzureError::Discovery(format!("redirect URI: {e}")))?;
        Ok(AzureClient::from_provider_metadata(
            metadata.clone(),
            ClientId::new(app.client_id.clone()),
            app.client_secret.clone().map(ClientSecret::new),
        )
        .set_redirect_uri(redirect))
    }

    /// The URL that starts a login: code flow, PKCE S256, `response_mode=query`.
    pub async fn authorize(
        &self,
        app: &AppRegistration,
        state: &str,
        nonce: &str,
        login_hint: Option<&str>,
    ) -> Result<Authorization, AzureError> {
        let metadata = self.metadata(&app.provider_tenant_id).await?;
        let client = self.client(&metadata, app)?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (state, nonce) = (state.to_owned(), nonce.to_owned());
        let mut request = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                move || CsrfToken::new(state),
                move || Nonce::new(nonce),
            )
            .set_pkce_challenge(challenge)
            .add_extra_param("response_mode", "query");
        for scope in SCOPES {
            request = request.add_scope(Scope::new(scope.to_owned()));
        }
        if let Some(hint) = login_hint {
            request = request.add_extra_param("login_hint", hint.to_owned());
        }
        let (url, _, _) = request.url();
        Ok(Authorization {
            url,
            pkce_verifier: verifier.secret().clone(),
        })
    }

    /// Exchanges the code (with the PKCE verifier) and validates the ID token: signature
    /// by the issuer's keys, `iss` exactly the tenant's issuer, `aud`, `exp`, `nonce`.
    pub async fn redeem(
        &self,
        app: &AppRegistration,
        code: &str,
        pkce_verifier: &str,
        nonce: &str,
    ) -> Result<(AzureTokens, AzureIdTokenClaims), AzureError> {
        let metadata = self.metadata(&app.provider_tenant_id).await?;
        let client = self.client(&metadata, app)?;
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| AzureError::Discovery(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_owned()))
            .request_async(&self.http)
            .await
            .map_err(token_error)?;
        let id_token = response.id_token().cloned().ok_or_else(|| {
            AzureError::InvalidIdToken("the token response has no ID token".into())
        })?;
        let claims = self.verify(app, &metadata, &id_token, nonce).await?;
        Ok((tokens(&response), claims))
    }

    async fn verify(
        &self,
        app: &AppRegistration,
        metadata: &Arc<CoreProviderMetadata>,
        id_token: &AzureIdToken,
        nonce: &str,
    ) -> Result<AzureIdTokenClaims, AzureError> {
        let nonce = Nonce::new(nonce.to_owned());
        let verifier = |m: &CoreProviderMetadata| {
            IdTokenVerifier::new_public_client(
                ClientId::new(app.client_id.clone()),
                m.issuer().clone(),
                m.jwks().clone(),
            )
        };
        match id_token.claims(&verifier(metadata), &nonce) {
            Ok(claims) => Ok(claims.clone()),
            Err(openidconnect::ClaimsVerificationError::SignatureVerification(
                openidconnect::SignatureVerificationError::NoMatchingKey,
            )) => {
                // Keys rotate: fetch them once more before refusing.
                let issuer = self.issuer(&app.provider_tenant_id);
                let fresh = self.refetch_keys(&issuer).await?;
                id_token
                    .claims(&verifier(&fresh), &nonce)
                    .cloned()
                    .map_err(|e| AzureError::InvalidIdToken(error_chain(&e)))
            }
            Err(e) => Err(AzureError::InvalidIdToken(error_chain(&e))),
        }
    }

    /// The refresh grant.
    pub async fn refresh(
        &self,
        app: &AppRegistration,
        refresh_token: &str,
    ) -> Result<AzureTokens, AzureError> {
        let metadata = self.metadata(&app.provider_tenant_id).await?;
        let client = self.client(&metadata, app)?;
        let token = RefreshToken::new(refresh_token.to_owned());
        let mut request = client
            .exchange_refresh_token(&token)
            .map_err(|e| AzureError::Discovery(e.to_string()))?;
        for scope in SCOPES {
            request = request.add_scope(Scope::new(scope.to_owned()));
        }
        let response = request
            .request_async(&self.http)
            .await
            .map_err(token_error)?;
        Ok(tokens(&response))
    }
}

fn tokens(response: &AzureTokenResponse) -> AzureTokens {
    AzureTokens {
        access_token: response.access_token().secret().clone(),
        refresh_token: response.refresh_token().map(|r| r.secret().clone()),
        id_token: response.id_token().map(|t| t.to_string()),
        expires_in: response.expires_in().unwrap_or(Duration::from_secs(3600)),
    }
}

fn token_error<RE: std::error::Error + 'static>(
    e: RequestTokenError<RE, StandardErrorResponse<CoreErrorResponseType>>,
) -> AzureError {
    match e {
        RequestTokenError::ServerResponse(response) => match response.error() {
            CoreErrorResponseType::InvalidGrant => AzureError::InvalidGrant,
            CoreErrorResponseType::Extension(code)
                if code == "server_error" || code == "temporarily_unavailable" =>
            {
                AzureError::Unavailable(format!("token endpoint answered {code}"))
            }
            other => AzureError::Refused {
                code: other.as_ref().to_owned(),
            },
        },
        RequestTokenError::Request(e) => AzureError::Unavailable(error_chain(&e)),
        RequestTokenError::Parse(e, _) => {
            AzureError::Unavailable(format!("bad token response: {e}"))
        }
        RequestTokenError::Other(e) => AzureError::Unavailable(e),
    }
}

/// An error and its sources, one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
