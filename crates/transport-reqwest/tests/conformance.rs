//! The transport scenarios of `token-testkit`, run against transport-reqwest (each call is
//! driven to completion on a multi-thread runtime, so scenarios can use plain threads).

use std::sync::Arc;

use token_core::{ClientConfig, Token};
use token_driver::{Driver, HandleCore};
use token_testkit::conformance::{self, Options, Transport};
use transport_reqwest::{ClientHandle, Error, TokenClient};

struct Reqwest {
    client: TokenClient,
    runtime: Arc<tokio::runtime::Runtime>,
    http: reqwest::Client,
}

#[derive(Clone, Debug)]
struct Handle {
    handle: ClientHandle,
    runtime: Arc<tokio::runtime::Runtime>,
    http: reqwest::Client,
}

impl Transport for Reqwest {
    type Handle = Handle;

    fn build(options: Options) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let client = TokenClient::builder()
            .timeout(options.timeout)
            .manager_config(options.manager)
            .clock(ArcClock(options.clock))
            .build()
            .unwrap();
        Self {
            client,
            runtime: Arc::new(runtime),
            http: transport_reqwest::http_client_builder().build().unwrap(),
        }
    }

    fn register(&self, config: ClientConfig) -> Handle {
        Handle {
            handle: self.client.register(config),
            runtime: Arc::clone(&self.runtime),
            http: self.http.clone(),
        }
    }

    fn core(handle: &Handle) -> &HandleCore {
        &handle.handle
    }

    fn organization(handle: &Handle, organization: &str) -> Handle {
        Handle {
            handle: handle.handle.organization(organization),
            ..handle.clone()
        }
    }

    fn token(handle: &Handle) -> Result<Token, Error> {
        handle.runtime.block_on(handle.handle.token())
    }

    fn call(handle: &Handle, url: &str) -> Result<u16, Error> {
        handle.runtime.block_on(async {
            let response = handle.handle.send(handle.http.get(url)).await?;
            Ok(response.status().as_u16())
        })
    }

    fn complete_authorization(handle: &Handle, redirect: &str) -> Result<Handle, Error> {
        // Inside the runtime: the code exchange is spawned on it.
        let user = handle
            .runtime
            .block_on(async { handle.handle.complete_authorization(redirect) })?;
        Ok(Handle {
            handle: user,
            ..handle.clone()
        })
    }

    fn driver(&self) -> &Arc<Driver> {
        self.client.driver()
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
                conformance::$name::<Reqwest>();
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
