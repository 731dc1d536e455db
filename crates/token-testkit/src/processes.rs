//! Tests that run as several operating-system processes: the test binary re-runs itself as a
//! child, running one (otherwise idle) test function that does the child's part.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// Starts this test binary again as a child that runs only the test `test` (which should do
/// nothing unless its environment says it is a child), with `envs` set and stdout piped.
pub fn spawn_child(test: &str, envs: &[(&str, String)]) -> Child {
    let mut command = Command::new(std::env::current_exe().expect("the test binary"));
    command
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (k, v) in envs {
        command.env(k, v);
    }
    command.spawn().expect("spawn a child process")
}

/// Waits for every child (each must succeed) and returns, per child, the lines of its stdout
/// that start with one of `prefixes`. (A child should print a line of its own first: the test
/// harness's `test name ... ` is not followed by a newline.)
pub fn outputs(children: Vec<Child>, prefixes: &[&str]) -> Vec<Vec<String>> {
    children
        .into_iter()
        .map(|mut child| {
            let stdout = child.stdout.take().expect("a piped stdout");
            let lines = BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .filter(|l| prefixes.iter().any(|p| l.starts_with(p)))
                .collect();
            assert!(
                child.wait().expect("wait for a child").success(),
                "a child failed"
            );
            lines
        })
        .collect()
}
