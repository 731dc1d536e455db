//! The built `tokenctl` binary against an in-process provider simulator: every provider, every
//! exit code, `--json`, `--raw`, `--repeat`, the 401 retry, `sim`, and that the client secret
//! never shows up in any output.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine as _;
use provider_sim::{
    CLIENT_ID, CLIENT_SECRET, Fault, MODULE_CLIENT_ID, ORGANIZATIONS, Provider, Simulator,
};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_tokenctl");
const PREFIXES: [&str; 5] = ["BOOKABLE", "BOOKINGTIME", "OCTORATE", "BOOKYFLOW", "TOKEN"];

/// What one run of the binary did.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// A directory under the system's temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "tokenctl-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    /// `XDG_CACHE_HOME` pointing here.
    fn xdg(&self) -> (String, String) {
        ("XDG_CACHE_HOME".to_owned(), self.0.display().to_string())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `tokenctl args` with exactly the credential variables in `env` (none inherited), and
/// `stdin` piped in when given. Asserts, for every run, that the client secret never appears
/// in the output. Unless `env` sets `XDG_CACHE_HOME`, each run gets an empty cache directory of
/// its own (so runs share no tokens, as before the cache).
fn tokenctl(args: &[&str], env: &[(String, String)], stdin: Option<&str>) -> Run {
    let mut command = Command::new(BIN);
    for prefix in PREFIXES {
        command
            .env_remove(format!("{prefix}_CLIENT_ID"))
            .env_remove(format!("{prefix}_CLIENT_SECRET"));
    }
    let own_cache = TempDir::new();
    if !env.iter().any(|(k, _)| k == "XDG_CACHE_HOME") {
        command.env("XDG_CACHE_HOME", own_cache.path());
    }
    command
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("tokenctl starts");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    let output = child.wait_with_output().expect("tokenctl runs");
    let run = Run {
        code: output.status.code().expect("exited, not killed"),
        stdout: String::from_utf8(output.stdout).expect("UTF-8 stdout"),
        stderr: String::from_utf8(output.stderr).expect("UTF-8 stderr"),
    };
    assert!(
        !run.stdout.contains(CLIENT_SECRET) && !run.stderr.contains(CLIENT_SECRET),
        "the client secret leaked: {args:?}\nstdout: {}\nstderr: {}",
        run.stdout,
        run.stderr
    );
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    run
}

/// The simulator's credentials under every provider's variables.
fn sim_env() -> Vec<(String, String)> {
    PREFIXES
        .iter()
        .flat_map(|p| {
            [
                (format!("{p}_CLIENT_ID"), CLIENT_ID.to_owned()),
                (format!("{p}_CLIENT_SECRET"), CLIENT_SECRET.to_owned()),
            ]
        })
        .collect()
}

/// A provider as tokenctl names it, with the options that point it at `sim`, the simulated
/// provider it talks to, and its protected route.
struct Case {
    name: &'static str,
    args: Vec<String>,
    provider: Provider,
    api_url: String,
}

impl Case {
    fn args(&self) -> Vec<&str> {
        let mut args = vec!["--provider", self.name];
        args.extend(self.args.iter().map(String::as_str));
        args
    }
}

fn cases(sim: &Simulator) -> Vec<Case> {
    let token_url = |p| vec!["--token-url".to_owned(), sim.token_url(p)];
    let org = ORGANIZATIONS[0];
    let with = |mut a: Vec<String>, more: &[&str]| {
        a.extend(more.iter().map(|s| (*s).to_owned()));
        a
    };
    vec![
        Case {
            name: "bookable",
            args: token_url(Provider::Bookable),
            provider: Provider::Bookable,
            api_url: sim.api_url(Provider::Bookable),
        },
        Case {
            name: "bookable-sandbox",
            args: token_url(Provider::BookableSandbox),
            provider: Provider::BookableSandbox,
            api_url: sim.api_url(Provider::BookableSandbox),
        },
        Case {
            name: "bookable-auth0",
            args: token_url(Provider::BookableAuth0),
            provider: Provider::BookableAuth0,
            api_url: sim.api_url(Provider::BookableAuth0),
        },
        Case {
            name: "bookingtime",
            args: with(token_url(Provider::Bookingtime), &["--org", org]),
            provider: Provider::Bookingtime,
            api_url: sim.org_api_url(org),
        },
        Case {
            name: "bookingtime-module",
            args: with(
                token_url(Provider::Bookingtime),
                &["--org", org, "--client-id", MODULE_CLIENT_ID],
            ),
            provider: Provider::Bookingtime,
            api_url: sim.org_api_url(org),
        },
        Case {
            name: "octorate",
            args: token_url(Provider::Octorate),
            provider: Provider::Octorate,
            api_url: sim.api_url(Provider::Octorate),
        },
        Case {
            name: "bookyflow",
            args: vec![
                "--base-url".into(),
                sim.bookyflow_site(),
                "--scope".into(),
                "read write".into(),
            ],
            provider: Provider::BookyFlow,
            api_url: sim.api_url(Provider::BookyFlow),
        },
        Case {
            name: "generic",
            args: with(token_url(Provider::Generic), &["--scope", "demo"]),
            provider: Provider::Generic,
            api_url: sim.api_url(Provider::Generic),
        },
    ]
}

fn case<'a>(cases: &'a [Case], name: &str) -> &'a Case {
    cases.iter().find(|c| c.name == name).unwrap()
}

fn jwt_payload(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url payload");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

#[test]
fn every_provider_token_summary_and_api_call() {
    let sim = Simulator::start().unwrap();
    let env = sim_env();
    for case in cases(&sim) {
        let before = sim.token_requests(case.provider);
        let mut args = vec!["token"];
        args.extend(case.args());
        let run = tokenctl(&args, &env, None);
        assert_eq!(run.code, 0, "{}: {}", case.name, run.stderr);
        assert!(run.stderr.is_empty(), "{}: {}", case.name, run.stderr);
        let out = &run.stdout;
        for expected in [
            format!("provider      {}\n", case.name),
            format!("endpoint      {}", sim.token_url(case.provider)),
            "token type    Bearer\n".to_owned(),
            "lifetime from the response's expires_in\n".to_owned(),
            "JWT claims (decoded only, NOT verified".to_owned(),
            "  iss: \"provider-sim\"".to_owned(),
        ] {
            assert!(
                out.contains(&expected),
                "{}: no {expected:?} in\n{out}",
                case.name
            );
        }
        // The token is shown as its first 8 characters only.
        let shown = out
            .lines()
            .find_map(|l| l.strip_prefix("access token  "))
            .unwrap();
        assert!(shown.starts_with("eyJhbGci… ("), "{shown}");
        assert!(
            out.split_whitespace()
                .all(|word| !(word.starts_with("eyJ") && word.len() > 12)),
            "a token leaked into the summary:\n{out}"
        );
        let expected_requests = if case.provider == Provider::Bookingtime {
            2
        } else {
            1
        };
        assert_eq!(
            sim.token_requests(case.provider) - before,
            expected_requests,
            "{}",
            case.name
        );

        let calls = sim.api_calls(case.provider);
        let mut args = vec!["get", case.api_url.as_str()];
        args.extend(case.args());
        let run = tokenctl(&args, &env, None);
        assert_eq!(run.code, 0, "{}: {}", case.name, run.stderr);
        let body: Value = serde_json::from_str(&run.stdout).expect("the API's JSON body");
        assert!(!body.is_null());
        assert_eq!(sim.api_calls(case.provider) - calls, 1, "{}", case.name);
    }
    // The summaries name organizations and granted scopes where there are some.
    let cases = cases(&sim);
    let mut args = vec!["token"];
    args.extend(case(&cases, "bookingtime").args());
    let run = tokenctl(&args, &env, None);
    assert!(
        run.stdout.contains("organization  org-alpha\n"),
        "{}",
        run.stdout
    );
    let mut args = vec!["token"];
    args.extend(case(&cases, "bookable").args());
    let run = tokenctl(&args, &env, None);
    assert!(
        run.stdout
            .contains("scopes        venue-booking:create venue:read\n"),
        "{}",
        run.stdout
    );
}

#[test]
fn json_prints_one_parsable_object() {
    let sim = Simulator::start().unwrap();
    let cases = cases(&sim);
    let generic = case(&cases, "generic");
    let mut args = vec!["token", "--json"];
    args.extend(generic.args());
    let run = tokenctl(&args, &sim_env(), None);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout.lines().count(), 1, "{}", run.stdout);
    let json: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(json["provider"], "generic");
    assert_eq!(json["endpoint"], sim.token_url(Provider::Generic));
    assert_eq!(json["token_type"], "Bearer");
    assert_eq!(json["scope"], "demo");
    assert_eq!(json["lifetime_source"], "expires_in");
    let expires_in = json["expires_in"].as_u64().unwrap();
    assert!(expires_in > 0 && expires_in <= 3600, "{expires_in}");
    let token = json["access_token"].as_str().unwrap();
    assert_eq!(jwt_payload(token)["sub"], CLIENT_ID);
    assert_eq!(json["jwt_claims"]["sub"], CLIENT_ID);
    assert!(json["expires_at"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn raw_prints_exactly_the_token_and_a_newline() {
    let sim = Simulator::start().unwrap();
    let cases = cases(&sim);
    let octorate = case(&cases, "octorate");
    let mut args = vec!["token", "--raw"];
    args.extend(octorate.args());
    let run = tokenctl(&args, &sim_env(), None);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.is_empty(), "{}", run.stderr);
    let token = run.stdout.strip_suffix('\n').expect("ends with a newline");
    assert!(!token.is_empty() && !token.contains(char::is_whitespace));
    assert_eq!(token.split('.').count(), 3, "{token}");
    assert_eq!(jwt_payload(token)["aud"], "octotable-pms");
}

#[test]
fn the_secret_can_come_from_stdin_and_never_from_argv() {
    let sim = Simulator::start().unwrap();
    let url = sim.token_url(Provider::Octorate);
    let args = [
        "token",
        "--provider",
        "octorate",
        "--token-url",
        &url,
        "--client-id",
        CLIENT_ID,
        "--client-secret-stdin",
    ];
    // No environment at all: id from argv, secret from stdin (newline trimmed, CRLF too).
    for input in [format!("{CLIENT_SECRET}\n"), format!("{CLIENT_SECRET}\r\n")] {
        let run = tokenctl(&args, &[], Some(&input));
        assert_eq!(run.code, 0, "{}", run.stderr);
    }
    // A wrong secret on stdin is rejected by the server: exit 3 with its error.
    let run = tokenctl(&args, &[], Some("not-the-secret\n"));
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stderr.contains("invalid_client"), "{}", run.stderr);
    // Empty stdin is a usage error.
    let run = tokenctl(&args, &[], Some(""));
    assert_eq!(run.code, 2, "{}", run.stderr);
    // There is no flag taking the secret itself.
    let run = tokenctl(
        &["token", "--provider", "octorate", "--client-secret", "x"],
        &[],
        None,
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
}

#[test]
fn configuration_errors_exit_2_and_name_the_problem() {
    let sim = Simulator::start().unwrap();
    let bookable = sim.token_url(Provider::Bookable);
    let only_id = [("BOOKABLE_CLIENT_ID".to_owned(), CLIENT_ID.to_owned())];
    let full = sim_env();
    // (arguments, environment, what the message must mention)
    type Check<'a> = (Vec<&'a str>, &'a [(String, String)], &'a str);
    let checks: Vec<Check> = vec![
        (
            vec!["token", "--provider", "octorate"],
            &[],
            "OCTORATE_CLIENT_ID",
        ),
        (
            vec![
                "token",
                "--provider",
                "bookable-sandbox",
                "--token-url",
                &bookable,
            ],
            &only_id,
            "BOOKABLE_CLIENT_SECRET",
        ),
        (
            vec![
                "token",
                "--provider",
                "bookingtime-module",
                "--org",
                "org-alpha",
            ],
            &[],
            "BOOKINGTIME_CLIENT_ID",
        ),
        (vec!["token", "--provider", "bookingtime"], &[], "--org"),
        (vec!["token", "--provider", "generic"], &[], "--token-url"),
        (
            vec!["token", "--provider", "bookyflow", "--scope", "read"],
            &[],
            "--base-url",
        ),
        (
            vec![
                "token",
                "--provider",
                "bookyflow",
                "--base-url",
                "https://example.com",
            ],
            &[],
            "--scope",
        ),
        (
            vec![
                "token",
                "--provider",
                "bookable",
                "--token-url",
                "http://auth.example.com/t",
            ],
            &full,
            "--allow-insecure-http",
        ),
        (
            vec!["get", "not a url", "--provider", "bookable"],
            &[],
            "invalid API URL",
        ),
        (
            vec![
                "get",
                "http://api.example.com/venues",
                "--provider",
                "bookable",
            ],
            &full,
            "--allow-insecure-http",
        ),
        (vec!["token", "--provider", "nonsense"], &[], "nonsense"),
        (
            vec!["token", "--provider", "bookable", "--raw", "--json"],
            &[],
            "--json",
        ),
        (vec!["get", "--provider", "bookable"], &[], "<URL>"),
    ];
    for (args, env, needle) in checks {
        let run = tokenctl(&args, env, None);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(run.stdout.is_empty(), "{args:?}: {}", run.stdout);
        assert!(run.stderr.contains(needle), "{args:?}: {}", run.stderr);
    }
    // Nothing was sent anywhere.
    assert_eq!(sim.total_token_requests(), 0);
}

#[test]
fn token_endpoint_failures_map_to_exit_codes() {
    let sim = Simulator::start().unwrap();
    let env = sim_env();
    let cases = cases(&sim);
    let bookable = case(&cases, "bookable");
    let run_with = |fault: Fault, extra: &[&str]| {
        sim.inject(Provider::Bookable, fault, 1);
        let mut args = vec!["token"];
        args.extend(bookable.args());
        args.extend(extra);
        tokenctl(&args, &env, None)
    };

    let run = run_with(Fault::InvalidClient, &["--json"]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stdout.is_empty());
    assert!(
        run.stderr.starts_with("tokenctl: ")
            && run.stderr.contains("invalid_client")
            && run.stderr.contains("Client authentication failed")
            && run.stderr.lines().count() == 1,
        "{}",
        run.stderr
    );

    let run = run_with(Fault::HtmlServiceUnavailable, &[]);
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert!(run.stderr.contains("503"), "{}", run.stderr);

    let run = run_with(Fault::ConnectionReset, &[]);
    assert_eq!(run.code, 4, "{}", run.stderr);

    let run = run_with(Fault::MalformedJson, &["--raw"]);
    assert_eq!(run.code, 5, "{}", run.stderr);
    assert!(run.stdout.is_empty());
    assert!(run.stderr.contains("malformed"), "{}", run.stderr);

    // bookingtime's refresh-token leg rejected: same exit code.
    sim.inject(Provider::Bookingtime, Fault::InvalidClient, 1);
    let mut args = vec!["get", &case(&cases, "bookingtime").api_url];
    args.extend(case(&cases, "bookingtime").args());
    let run = tokenctl(&args, &env, None);
    assert_eq!(run.code, 3, "{}", run.stderr);

    // Nobody listening: exit 4.
    let closed = {
        let gone = Simulator::start().unwrap();
        gone.token_url(Provider::Bookable)
    };
    let run = tokenctl(
        &["token", "--provider", "bookable", "--token-url", &closed],
        &env,
        None,
    );
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert!(run.stderr.contains("unreachable"), "{}", run.stderr);
}

#[test]
fn repeat_reuses_one_token() {
    let sim = Simulator::start().unwrap();
    let env = sim_env();
    let cases = cases(&sim);
    let bookable = case(&cases, "bookable");
    let mut args = vec!["get", bookable.api_url.as_str(), "--repeat", "5"];
    args.extend(bookable.args());
    let run = tokenctl(&args, &env, None);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout.lines().count(), 5, "{}", run.stdout);
    for line in run.stdout.lines() {
        serde_json::from_str::<Value>(line).expect("one JSON body per line");
    }
    assert_eq!(run.stderr, "tokenctl: 5 API calls, 1 token request\n");
    assert_eq!(sim.token_requests(Provider::Bookable), 1);
    assert_eq!(sim.api_calls(Provider::Bookable), 5);

    // bookingtime: a refresh token, then one organization access token, for all calls.
    let bookingtime = case(&cases, "bookingtime");
    let mut args = vec!["get", bookingtime.api_url.as_str(), "--repeat", "3"];
    args.extend(bookingtime.args());
    let run = tokenctl(&args, &env, None);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stderr, "tokenctl: 3 API calls, 2 token requests\n");
    assert_eq!(sim.token_requests(Provider::Bookingtime), 2);
    assert_eq!(sim.api_calls(Provider::Bookingtime), 3);
}

/// A new process always starts with a new token, so the simulator cannot revoke "the cached
/// one" from outside. What can be shown honestly: when the API answers 401, tokenctl
/// invalidates the token, fetches a new one and retries exactly once, then gives up with
/// exit 3. A Bookable token on Octorate's route is rejected every time.
#[test]
fn api_rejections_retry_once_on_401_then_exit_3() {
    let sim = Simulator::start().unwrap();
    let env = sim_env();
    let cases = cases(&sim);
    let bookable = case(&cases, "bookable");
    let octorate_api = sim.api_url(Provider::Octorate);
    let mut args = vec!["get", octorate_api.as_str(), "--repeat", "2"];
    args.extend(bookable.args());
    let run = tokenctl(&args, &env, None);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stdout.is_empty());
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(
        lines[0],
        "tokenctl: 1 API call (2 HTTP requests: retried after 401), 2 token requests"
    );
    assert!(lines[1].contains("HTTP 401"), "{}", run.stderr);
    assert_eq!(sim.token_requests(Provider::Bookable), 2);
    assert_eq!(sim.api_rejections(Provider::Octorate), 2);

    // 403 (BookyFlow without the `read` scope) is not retried: exit 3 after one request.
    let bookyflow_api = sim.api_url(Provider::BookyFlow);
    let site = sim.bookyflow_site();
    let run = tokenctl(
        &[
            "get",
            &bookyflow_api,
            "--provider",
            "bookyflow",
            "--base-url",
            &site,
            "--scope",
            "write",
        ],
        &env,
        None,
    );
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stderr.contains("Insufficient scope"), "{}", run.stderr);
    assert_eq!(sim.token_requests(Provider::BookyFlow), 1);

    // Any other API error status: exit 1.
    let missing = format!("{}/no/such/route", sim.base_url());
    let mut args = vec!["get", missing.as_str()];
    args.extend(bookable.args());
    let run = tokenctl(&args, &env, None);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("404"), "{}", run.stderr);
}

#[test]
fn sim_subcommand_serves_and_explains_itself() {
    let mut child = Command::new(BIN)
        .args(["sim", "--port", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let base = first
        .strip_prefix("provider simulator listening on ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("unexpected first line: {first}"))
        .to_owned();
    let mut text = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let last = line.trim_start().starts_with("curl ");
        text.push_str(&line);
        text.push('\n');
        if last {
            break;
        }
    }
    for expected in [
        "export BOOKABLE_CLIENT_ID=sim-client",
        "export TOKEN_CLIENT_ID=",
        &format!("--client-id {MODULE_CLIENT_ID}"),
        &format!("{base}/octorate/oauth2/token"),
        &format!("{base}/bookyflow/api/properties"),
        "tokenctl get ",
        &format!(
            "tokenctl login --no-browser --provider generic --authorize-url {base}/generic/authorize "
        ),
    ] {
        assert!(text.contains(expected), "no {expected:?} in\n{text}");
    }
    // The printed endpoints work.
    let url = format!("{base}/octorate/oauth2/token");
    let run = tokenctl(
        &["token", "--provider", "octorate", "--token-url", &url],
        &sim_env(),
        None,
    );
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(run.code, 0, "{}", run.stderr);
}

/// `source` as the summary prints it.
fn source_line(summary: &str) -> &str {
    summary
        .lines()
        .find_map(|l| l.strip_prefix("source        "))
        .unwrap_or_else(|| panic!("no source line in\n{summary}"))
}

#[test]
fn the_disk_cache_makes_runs_in_a_row_share_one_token() {
    let sim = Simulator::start().unwrap();
    let cache = TempDir::new();
    let mut env = sim_env();
    env.push(cache.xdg());
    let cases = cases(&sim);
    let bookable = case(&cases, "bookable");
    let mut args = vec!["token"];
    args.extend(bookable.args());
    for i in 0..5 {
        let run = tokenctl(&args, &env, None);
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert!(run.stderr.is_empty(), "{}", run.stderr);
        let source = source_line(&run.stdout);
        if i == 0 {
            assert_eq!(source, "fetched (1 token request)");
        } else {
            let dir = cache.path().join("tokenctl");
            assert_eq!(
                source,
                format!("the cache ({}; no token request)", dir.display())
            );
        }
    }
    assert_eq!(sim.token_requests(Provider::Bookable), 1);
    // The files are in $XDG_CACHE_HOME/tokenctl.
    let files = std::fs::read_dir(cache.path().join("tokenctl"))
        .unwrap()
        .count();
    assert!(files > 0);

    // --json says where the token came from; `get` uses the same cache.
    let mut json_args = args.clone();
    json_args.push("--json");
    let run = tokenctl(&json_args, &env, None);
    let json: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(json["source"], "cache");
    assert_eq!(json["lifetime_source"], "store");
    let mut get = vec!["get", bookable.api_url.as_str(), "--repeat", "2"];
    get.extend(bookable.args());
    let run = tokenctl(&get, &env, None);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stderr, "tokenctl: 2 API calls, 0 token requests\n");
    assert_eq!(sim.token_requests(Provider::Bookable), 1);

    // --no-cache: memory only, a request of its own.
    let mut no_cache = json_args.clone();
    no_cache.push("--no-cache");
    let run = tokenctl(&no_cache, &env, None);
    let json: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(json["source"], "fetched");
    assert_eq!(sim.token_requests(Provider::Bookable), 2);
    // --no-cache and --store exclude each other.
    let mut both = no_cache.clone();
    both.extend(["--store", "redis://127.0.0.1:1"]);
    let run = tokenctl(&both, &env, None);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("--store"), "{}", run.stderr);

    // A client without a secret is not cached (no key to encrypt with), quietly.
    let module = case(&cases, "bookingtime-module");
    let mut args = vec!["token"];
    args.extend(module.args());
    for _ in 0..2 {
        let run = tokenctl(&args, &env, None);
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert!(run.stderr.is_empty(), "{}", run.stderr);
        assert!(
            source_line(&run.stdout).starts_with("fetched (2 token requests); not cached: "),
            "{}",
            run.stdout
        );
    }
}

#[test]
fn an_unusable_cache_directory_is_one_warning_not_a_failure() {
    let sim = Simulator::start().unwrap();
    let dir = TempDir::new();
    // XDG_CACHE_HOME is a file: $XDG_CACHE_HOME/tokenctl cannot be created.
    let file = dir.path().join("not-a-directory");
    std::fs::write(&file, b"x").unwrap();
    let mut env = sim_env();
    env.push(("XDG_CACHE_HOME".to_owned(), file.display().to_string()));
    let cases = cases(&sim);
    let octorate = case(&cases, "octorate");
    let mut args = vec!["token"];
    args.extend(octorate.args());
    let run = tokenctl(&args, &env, None);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(
        run.stderr
            .starts_with("tokenctl: warning: cache directory "),
        "{}",
        run.stderr
    );
    assert_eq!(
        source_line(&run.stdout),
        "fetched (1 token request); not cached: the cache directory cannot be used"
    );
    let mut args = vec!["get", octorate.api_url.as_str()];
    args.extend(octorate.args());
    let run = tokenctl(&args, &env, None);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert_eq!(sim.token_requests(Provider::Octorate), 2);
}

#[test]
fn a_redis_store_shares_one_token_between_runs() {
    let redis = token_testkit::redis::RedisServer::start();
    let url = redis.url();
    let sim = Simulator::start().unwrap();
    let env = sim_env();
    let cases = cases(&sim);
    let generic = case(&cases, "generic");
    let mut args = vec!["token", "--json", "--store", url.as_str()];
    args.extend(generic.args());
    let mut sources = Vec::new();
    for _ in 0..2 {
        // Each run has a cache directory of its own: only Redis is shared.
        let run = tokenctl(&args, &env, None);
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert!(run.stderr.is_empty(), "{}", run.stderr);
        let json: Value = serde_json::from_str(&run.stdout).unwrap();
        sources.push(json["source"].as_str().unwrap().to_owned());
    }
    assert_eq!(sources, ["fetched", "cache"]);
    assert_eq!(sim.token_requests(Provider::Generic), 1);
    let mut args = vec!["token", "--store", url.as_str()];
    args.extend(generic.args());
    let run = tokenctl(&args, &env, None);
    assert_eq!(
        source_line(&run.stdout),
        format!("the cache ({url}; no token request)")
    );

    // `get` too: three calls, no token request.
    let mut get = vec!["get", generic.api_url.as_str(), "--repeat", "3"];
    get.extend(["--store", url.as_str()]);
    get.extend(generic.args());
    let run = tokenctl(&get, &env, None);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stderr, "tokenctl: 3 API calls, 0 token requests\n");
    assert_eq!(sim.token_requests(Provider::Generic), 1);

    // Not a Redis URL: a usage error, the password never shown.
    for bad in [
        "http://user:hunter2@127.0.0.1:6379",
        "hunter2",
        "redis://u:hunter2@[::1",
    ] {
        let mut args = vec!["token", "--store", bad];
        args.extend(generic.args());
        let run = tokenctl(&args, &env, None);
        assert_eq!(run.code, 2, "{bad}: {}", run.stderr);
        assert!(
            run.stderr
                .starts_with("tokenctl: --store: invalid Redis URL"),
            "{}",
            run.stderr
        );
        assert!(!run.stderr.contains("hunter2"), "{}", run.stderr);
    }
    assert_eq!(sim.token_requests(Provider::Generic), 1);
}

#[test]
fn an_unreachable_redis_is_one_warning_not_a_failure() {
    let mut redis = token_testkit::redis::RedisServer::start();
    let url = redis.url().replace("redis://", "redis://:hunter2@");
    redis.shutdown_nosave();
    let sim = Simulator::start().unwrap();
    let cases = cases(&sim);
    let generic = case(&cases, "generic");
    let mut args = vec!["token", "--store", url.as_str()];
    args.extend(generic.args());
    let run = tokenctl(&args, &sim_env(), None);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(
        run.stderr
            .starts_with("tokenctl: warning: Redis at redis://127.0.0.1:")
    );
    assert!(!run.stderr.contains("hunter2"), "{}", run.stderr);
    assert!(source_line(&run.stdout).starts_with("fetched (1 token request); not cached: "));
}

#[test]
fn get_repeat_with_an_interval_uses_one_client() {
    let sim = Simulator::start().unwrap();
    let env = sim_env();
    let cases = cases(&sim);
    let octorate = case(&cases, "octorate");
    let mut args = vec![
        "get",
        octorate.api_url.as_str(),
        "--repeat",
        "3",
        "--interval-ms",
        "1",
    ];
    args.extend(octorate.args());
    let run = tokenctl(&args, &env, None);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout.lines().count(), 3, "{}", run.stdout);
    assert_eq!(run.stderr, "tokenctl: 3 API calls, 1 token request\n");
    assert_eq!(sim.api_calls(Provider::Octorate), 3);
    assert_eq!(sim.token_requests(Provider::Octorate), 1);
    // --interval-ms needs --repeat.
    let mut args = vec!["get", octorate.api_url.as_str(), "--interval-ms", "5"];
    args.extend(octorate.args());
    let run = tokenctl(&args, &env, None);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("--repeat"), "{}", run.stderr);
}

#[test]
fn quota_headers_show_in_the_summary_and_json() {
    let sim = Simulator::start().unwrap();
    sim.set_client_quota(Provider::Bookable, provider_sim::Quota::new(10, 100));
    let env = sim_env();
    let cases = cases(&sim);
    let bookable = case(&cases, "bookable");
    let mut args = vec!["token", "--json"];
    args.extend(bookable.args());
    let run = tokenctl(&args, &env, None);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let json: Value = serde_json::from_str(&run.stdout).unwrap();
    let quota = &json["quota"];
    let reset = |v: &Value| {
        let secs = v.as_u64().unwrap_or_else(|| panic!("a number: {v}"));
        assert!(secs > 0, "{v}");
        secs
    };
    let hour = reset(&quota["client"]["per_hour"]["reset_secs"]);
    let day = reset(&quota["client"]["per_day"]["reset_secs"]);
    assert!(hour <= 3600 && day <= 86_400, "{quota}");
    let reset_at = reset(&quota["rate_limit"]["reset_at"]);
    assert_eq!(
        quota,
        &serde_json::json!({
            "client": {
                "per_hour": {"quota": 10, "remaining": 9, "reset_secs": hour},
                "per_day": {"quota": 100, "remaining": 99, "reset_secs": day},
            },
            "organization": null,
            "rate_limit": {"limit": 10, "remaining": 9, "reset_at": reset_at},
        })
    );
    // The summary, with an organization quota too.
    sim.set_organization_quota(Provider::Bookable, Some(provider_sim::Quota::new(50, 500)));
    let mut args = vec!["token"];
    args.extend(bookable.args());
    let run = tokenctl(&args, &env, None);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let line = |label: &str| {
        run.stdout
            .lines()
            .find_map(|l| l.strip_prefix(label))
            .unwrap_or_else(|| panic!("no {label:?} in\n{}", run.stdout))
            .to_owned()
    };
    assert!(
        line("client quota  ").starts_with("per hour: 8 of 10 left (resets in "),
        "{}",
        run.stdout
    );
    assert!(line("client quota  ").contains("; per day: 98 of 100 left"));
    assert!(line("org quota     ").starts_with("per hour: 49 of 50 left"));
    assert!(line("rate limit    ").starts_with("8 of 10 left (resets at "));

    // No quota headers (Octorate): `"quota": null` and no quota lines.
    let octorate = case(&cases, "octorate");
    let mut args = vec!["token", "--json"];
    args.extend(octorate.args());
    let run = tokenctl(&args, &env, None);
    let json: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(json["quota"], Value::Null);
    let mut args = vec!["token"];
    args.extend(octorate.args());
    let run = tokenctl(&args, &env, None);
    assert!(!run.stdout.contains("quota"), "{}", run.stdout);
}

/// A `tokenctl login --no-browser` in progress: the authorization URL it printed, and the
/// process.
struct LoginRun {
    child: std::process::Child,
    url: String,
    /// The stderr lines before the URL.
    before: Vec<String>,
    /// The rest of stderr, read on a thread.
    rest: std::thread::JoinHandle<String>,
    _cache: TempDir,
}

impl LoginRun {
    /// Starts `tokenctl login --no-browser args` with exactly `env` and waits for the one
    /// stderr line that starts with `http`.
    fn start(args: &[&str], env: &[(String, String)]) -> LoginRun {
        let cache = TempDir::new();
        let mut command = Command::new(BIN);
        for prefix in PREFIXES {
            command
                .env_remove(format!("{prefix}_CLIENT_ID"))
                .env_remove(format!("{prefix}_CLIENT_SECRET"));
        }
        let mut child = command
            .env("XDG_CACHE_HOME", cache.path())
            .args(["login", "--no-browser"])
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut before = Vec::new();
        let url = loop {
            let mut line = String::new();
            let n = stderr.read_line(&mut line).unwrap();
            assert!(n > 0, "no URL line on stderr; before it: {before:?}");
            let line = line.trim_end_matches('\n').to_owned();
            if line.starts_with("http") {
                break line;
            }
            before.push(line);
        };
        let rest = std::thread::spawn(move || {
            let mut rest = String::new();
            let _ = std::io::Read::read_to_string(&mut stderr, &mut rest);
            rest
        });
        LoginRun {
            child,
            url,
            before,
            rest,
            _cache: cache,
        }
    }

    /// The redirect URI the authorization URL names.
    fn redirect_uri(&self) -> String {
        let query = self.url.split_once('?').unwrap().1;
        form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "redirect_uri")
            .map(|(_, v)| v.into_owned())
            .expect("a redirect_uri")
    }

    /// Waits for the process: its exit code, stdout and the rest of stderr.
    fn finish(mut self) -> Run {
        let mut stdout = String::new();
        std::io::Read::read_to_string(self.child.stdout.as_mut().unwrap(), &mut stdout).unwrap();
        let status = self.child.wait().unwrap();
        let stderr = self.rest.join().unwrap();
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(!stdout.contains(CLIENT_SECRET) && !stderr.contains(CLIENT_SECRET));
        Run {
            code: status.code().expect("exited, not killed"),
            stdout,
            stderr,
        }
    }
}

/// A browser that does not follow redirects (so each hop is seen).
fn browser() -> ureq::Agent {
    ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .max_redirects(0)
            .http_status_as_error(false)
            .build(),
    )
}

fn get_page(agent: &ureq::Agent, url: &str) -> (u16, Option<String>, String) {
    let mut response = agent.get(url).call().unwrap();
    let location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response.body_mut().read_to_string().unwrap_or_default();
    (response.status().as_u16(), location, body)
}

fn generic_login_args(sim: &Simulator) -> Vec<String> {
    [
        "--provider",
        "generic",
        "--authorize-url",
        &sim.authorize_url(Provider::Generic).unwrap(),
        "--token-url",
        &sim.token_url(Provider::Generic),
        "--issuer",
        &sim.issuer(Provider::Generic),
        "--client-id",
        provider_sim::PUBLIC_CLIENT_ID,
        "--scope",
        "read write",
    ]
    .map(str::to_owned)
    .to_vec()
}

#[test]
fn login_signs_a_public_client_in_through_the_loopback_listener() {
    let sim = Simulator::start().unwrap();
    let args = generic_login_args(&sim);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // No secret anywhere: a public client.
    let login = LoginRun::start(&args, &[]);
    assert!(
        login.before.iter().all(|l| l.starts_with("tokenctl: ")),
        "{:?}",
        login.before
    );
    assert!(
        login
            .url
            .starts_with(&sim.authorize_url(Provider::Generic).unwrap())
    );
    assert!(!login.url.contains(char::is_whitespace));
    let redirect_uri = login.redirect_uri();
    let port = redirect_uri
        .strip_prefix("http://127.0.0.1:")
        .and_then(|rest| rest.strip_suffix("/callback"))
        .unwrap_or_else(|| panic!("redirect_uri {redirect_uri}"));
    assert!(port.parse::<u16>().unwrap() > 0);
    let query = login.url.split_once('?').unwrap().1;
    let param = |name: &str| {
        form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    assert_eq!(param("code_challenge_method").as_deref(), Some("S256"));
    assert_eq!(param("scope").as_deref(), Some("read write"));
    assert_eq!(
        param("client_id").as_deref(),
        Some(provider_sim::PUBLIC_CLIENT_ID)
    );

    let agent = browser();
    // Another path: 404, and the wait goes on.
    let (status, _, _) = get_page(&agent, &format!("http://127.0.0.1:{port}/favicon.ico"));
    assert_eq!(status, 404);
    // The authorization endpoint approves and redirects to the listener.
    let (status, location, _) = get_page(&agent, &login.url);
    assert_eq!(status, 302);
    let location = location.expect("a Location");
    assert!(
        location.starts_with(&format!("{redirect_uri}?")),
        "{location}"
    );
    let (status, _, page) = get_page(&agent, &location);
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Signed in"), "{page}");

    let run = login.finish();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.is_empty(), "{}", run.stderr);
    for expected in [
        "provider      generic\n",
        "scopes        read write\n",
        "source        fetched (1 token request); not cached: ",
        "  sub: \"sim-user\"\n",
        "  client_id: \"sim-public\"\n",
    ] {
        assert!(
            run.stdout.contains(expected),
            "no {expected:?} in\n{}",
            run.stdout
        );
    }
    assert_eq!(sim.code_exchanges(Provider::Generic), 1);
    // The process is gone, and with it the listener.
    assert!(std::net::TcpStream::connect(format!("127.0.0.1:{port}")).is_err());
}

#[test]
fn login_json_for_a_confidential_client_and_bookingtime() {
    let sim = Simulator::start().unwrap();
    let mut args = generic_login_args(&sim);
    // The confidential client, its secret from the environment.
    let id = args
        .iter()
        .position(|a| a == provider_sim::PUBLIC_CLIENT_ID)
        .unwrap();
    args[id] = CLIENT_ID.to_owned();
    args.extend(["--json", "--authorize-param", "prompt=consent"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let login = LoginRun::start(&args, &sim_env());
    assert!(login.url.contains("&prompt=consent"), "{}", login.url);
    let agent = browser();
    let (_, location, _) = get_page(&agent, &login.url);
    let (status, _, _) = get_page(&agent, &location.unwrap());
    assert_eq!(status, 200);
    let run = login.finish();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let json: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(json["provider"], "generic");
    assert_eq!(json["source"], "fetched");
    assert_eq!(json["jwt_claims"]["sub"], provider_sim::TEST_USER);
    assert_eq!(json["jwt_claims"]["client_id"], CLIENT_ID);

    // bookingtime: the code gives the user's refresh token, then an organization's token.
    let org = ORGANIZATIONS[1];
    let authorize = sim.authorize_url(Provider::Bookingtime).unwrap();
    let token_url = sim.token_url(Provider::Bookingtime);
    let issuer = sim.issuer(Provider::Bookingtime);
    let login = LoginRun::start(
        &[
            "--provider",
            "bookingtime",
            "--org",
            org,
            "--authorize-url",
            &authorize,
            "--token-url",
            &token_url,
            "--issuer",
            &issuer,
            "--client-id",
            provider_sim::PUBLIC_CLIENT_ID,
        ],
        &[],
    );
    let (_, location, _) = get_page(&agent, &login.url);
    let (status, _, page) = get_page(&agent, &location.unwrap());
    assert_eq!(status, 200, "{page}");
    let run = login.finish();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains(&format!("organization  {org}\n")),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("source        fetched (2 token requests)"),
        "{}",
        run.stdout
    );

    // bookingtime's authorization endpoint is never guessed; other providers have none.
    let run = tokenctl(
        &[
            "login",
            "--provider",
            "bookingtime",
            "--org",
            org,
            "--no-browser",
        ],
        &sim_env(),
        None,
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("--authorize-url"), "{}", run.stderr);
    let run = tokenctl(
        &[
            "login",
            "--provider",
            "octorate",
            "--authorize-url",
            "https://auth.example.com/authorize",
            "--no-browser",
        ],
        &sim_env(),
        None,
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("generic and bookingtime"),
        "{}",
        run.stderr
    );
}

#[test]
fn login_refuses_a_redirect_with_the_wrong_state() {
    let sim = Simulator::start().unwrap();
    let args = generic_login_args(&sim);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let login = LoginRun::start(&args, &[]);
    let forged = format!("{}?code=stolen-code&state=forged", login.redirect_uri());
    let (status, _, page) = get_page(&browser(), &forged);
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("Sign-in failed"), "{page}");
    let run = login.finish();
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(
        run.stderr
            .starts_with("tokenctl: the sign-in was refused: ")
            && run.stderr.contains("state"),
        "{}",
        run.stderr
    );
    assert_eq!(sim.code_exchanges(Provider::Generic), 0);
    assert_eq!(sim.total_token_requests(), 0);
}

#[test]
fn login_gives_up_after_the_timeout() {
    let sim = Simulator::start().unwrap();
    let mut args = generic_login_args(&sim);
    args.extend(["--timeout".to_owned(), "0.3".to_owned()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let login = LoginRun::start(&args, &[]);
    let port_url = login.redirect_uri();
    let run = login.finish();
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    assert!(
        run.stderr
            .starts_with("tokenctl: timed out: no redirect to ")
            && run.stderr.contains("within 0.3s"),
        "{}",
        run.stderr
    );
    let addr = port_url
        .strip_prefix("http://")
        .and_then(|r| r.strip_suffix("/callback"))
        .unwrap()
        .to_owned();
    assert!(std::net::TcpStream::connect(addr).is_err());
    assert_eq!(sim.total_token_requests(), 0);
}
