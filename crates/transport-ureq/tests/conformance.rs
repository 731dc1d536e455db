//! The transport scenarios of `token-testkit`, run against transport-ureq.

use std::sync::Arc;

use token_core::{ClientConfig, Token};
use token_driver::{Driver, HandleCore};
use token_testkit::conformance::{self, Options, Transport};
use transport_ureq::{ClientHandle, Error, TokenClient};

struct Ureq(TokenClient);

impl Transport for Ureq {
    type Handle = ClientHandle;

    fn build(options: Options) -> Self {
        let mut builder = TokenClient::builder()
            .timeout(options.timeout)
            .manager_config(options.manager);
        builder = builder.clock(ArcClock(options.clock));
        Self(builder.build())
    }

    fn register(&self, config: ClientConfig) -> ClientHandle {
        self.0.register(config)
    }

    fn core(handle: &ClientHandle) -> &HandleCore {
        handle
    }

    fn organization(handle: &ClientHandle, organization: &str) -> ClientHandle {
        handle.organization(organization)
    }

    fn token(handle: &ClientHandle) -> Result<Token, Error> {
        handle.token()
    }

    fn call(handle: &ClientHandle, url: &str) -> Result<u16, Error> {
        let request = http::Request::get(url).body(Vec::new()).unwrap();
        Ok(handle.call(request)?.status().as_u16())
    }

    fn complete_authorization(
        handle: &ClientHandle,
        redirect: &str,
    ) -> Result<ClientHandle, Error> {
        handle.complete_authorization(redirect)
    }

    fn driver(&self) -> &Arc<Driver> {
        self.0.driver()
    }
}

/// A shared clock as a builder's clock.
struct ArcClock(Arc<dyn token_driver::Clock>);

impl token_driver::Clock for ArcClock {
    fn now(&self) -> std::time::Instant {
        self.0.now()
    }

    fn wall(&self) -> std::time::SystemTime {
        self.0.wall()
    }

    fn watch(&self, wake: std::sync::Weak<token_driver::Wake>) {
        self.0.watch(wake);
    }
}

macro_rules! scenarios {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                conformance::$name::<Ureq>();
            }
        )*
    };
}

scenarios!(
    every_preset_end_to_end,
    many_callers_one_token_request,
    the_timer_refreshes_a_token_in_use_and_no_caller_waits,
    a_late_caller_gets_a_valid_token_at_once,
    an_unused_token_is_not_refreshed,
    expiry_follows_the_injected_clock,
    bookingtime_organizations_share_one_refresh_token,
    a_revoked_refresh_token_restarts_the_chain,
    a_401_renews_once_for_many_callers,
    every_fault_on_a_first_fetch_is_typed_and_secret_free,
    every_fault_during_a_refresh_keeps_the_valid_token_flowing,
    insecure_api_urls_are_refused_and_never_echo_secrets,
    a_panic_in_a_fetch_fails_its_waiters_at_once,
    the_worker_stops_with_the_last_clone,
    tokens_flow_under_load_and_nobody_waits_for_a_refresh,
    an_api_that_rejects_every_token_costs_a_handful_of_token_requests,
    bookingtime_fan_out_goes_out_in_parallel,
    a_users_authorization_end_to_end,
    a_denied_or_forged_authorization_is_a_typed_error,
    auth0_quota_reaches_the_token,
);
