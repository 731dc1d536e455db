//! What both transports' handles share: the driver, the key's slot, the configuration, and the
//! accessors and commands that do not depend on how HTTP is sent.

use std::fmt;
use std::sync::Arc;

use token_core::{AuthorizationStart, ClientConfig, Token, TokenKey};

use crate::driver::Driver;
use crate::error::Error;
use crate::slot::KeySlot;

/// The transport-independent part of a client handle: one registered configuration, and one
/// key of it (the application's own token, an organization's, or a user's).
#[derive(Clone)]
pub struct HandleCore {
    driver: Arc<Driver>,
    slot: Arc<KeySlot>,
    config: Arc<ClientConfig>,
}

impl fmt::Debug for HandleCore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandleCore")
            .field("provider", &self.config.provider())
            .field("key", self.slot.key())
            .finish_non_exhaustive()
    }
}

impl HandleCore {
    /// Registers `config` with `driver` and returns the handle of its own key.
    pub fn register(driver: &Arc<Driver>, config: ClientConfig) -> Self {
        let (id, config) = driver.register(config);
        let slot = driver.slot(&TokenKey::new(id));
        Self {
            driver: Arc::clone(driver),
            slot,
            config,
        }
    }

    /// The same grant for one bookingtime organization (its own access tokens, sharing the
    /// grant's refresh token).
    pub fn organization(&self, organization: &str) -> Self {
        self.with_key(self.slot.key().clone().for_organization(organization))
    }

    /// The same client for a user's grant (the Authorization Code flow), named by your id for
    /// the user.
    pub fn user(&self, user: &str) -> Self {
        self.with_key(TokenKey::for_user(self.slot.key().client(), user))
    }

    fn with_key(&self, key: TokenKey) -> Self {
        Self {
            driver: Arc::clone(&self.driver),
            slot: self.driver.slot(&key),
            config: Arc::clone(&self.config),
        }
    }

    /// Starts a user's authorization (the Authorization Code flow with PKCE): returns the URL
    /// to open in the user's browser. `user` is your id for the user; `redirect_uri` is where
    /// the browser comes back (HTTPS, or `http://127.0.0.1:{port}/…` for a loopback listener).
    pub fn start_authorization(
        &self,
        user: &str,
        redirect_uri: &str,
    ) -> Result<AuthorizationStart, Error> {
        self.driver
            .start_authorization(self.slot.key().client(), user, redirect_uri)
    }

    /// Completes an authorization from the URL the browser was redirected to (checks its
    /// `state`, redirect URI and issuer, then exchanges the code): returns the handle of the
    /// user's tokens (for bookingtime, then pick an [`organization`](Self::organization)).
    pub fn complete_authorization(&self, redirect: &str) -> Result<Self, Error> {
        let grant = self.driver.complete_authorization(redirect)?;
        let user = grant
            .subject()
            .user()
            .expect("invariant: authorizations are users' grants");
        Ok(self.user(user))
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The cache key.
    pub fn key(&self) -> &TokenKey {
        self.slot.key()
    }

    /// The driver.
    pub fn driver(&self) -> &Arc<Driver> {
        &self.driver
    }

    /// The key's slot.
    pub fn slot(&self) -> &KeySlot {
        &self.slot
    }

    /// The cached token, if one can be served now without asking the manager.
    #[inline]
    pub fn cached(&self) -> Option<Token> {
        self.driver.cached(&self.slot)
    }

    /// Runs `f` on the cached token without cloning it, if one can be served now.
    #[inline]
    pub fn with_cached<R>(&self, f: impl FnOnce(&Token) -> R) -> Option<R> {
        self.driver.with_cached(&self.slot, f)
    }

    /// [`with_cached`](Self::with_cached), handing `f` back on a miss.
    #[inline]
    pub fn try_with_cached<R, F: FnOnce(&Token) -> R>(&self, f: F) -> Result<R, F> {
        self.driver.try_with_cached(&self.slot, f)
    }

    /// Reports that the API rejected `token`; returns whether retrying the call with the key's
    /// (new) token is worthwhile. The first rejection since the API last accepted one of this
    /// key's tokens drops it (`true`: get a new one and retry); a rejection of a token already
    /// replaced changes nothing (`true`: retry with the current one); when the previous new
    /// token was refused too, the token is kept and renewed after a backoff (`false`: do not
    /// retry, the API refuses every token). Many 401s for one token count once.
    pub fn invalidate(&self, token: &Token) -> bool {
        self.driver
            .invalidate(&self.slot, token.access_token())
            .retry()
    }

    /// Reports that the API accepted `token` (a non-401 answer). Costs nothing unless an
    /// earlier rejection put the key on probation.
    pub fn confirm(&self, token: &Token) {
        self.driver.confirm(&self.slot, token.access_token());
    }
}
