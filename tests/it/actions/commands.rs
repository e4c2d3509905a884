//! Commands: run without a shell, killed at their timeout, given secrets they never give back,
//! their output cut, and refused unless configuration enables them.

use super::*;

#[tokio::test]
async fn commands_run_without_a_shell_and_report_their_exit() {
    let fixture = Fixture::with_commands(true).await;
    let ten = Duration::from_secs(10);
    let outcome = fixture.command(&["printf", "%s-%s", "hosts", "isolated"], Vec::new(), ten).await;
    assert_eq!(outcome, Outcome::Command { exit_code: 0, stdout: "hosts-isolated".into(), stderr: String::new() });
    let Outcome::Command { exit_code, .. } = fixture.command(&["false"], Vec::new(), ten).await else {
        panic!("`false` runs")
    };
    assert_eq!(exit_code, 1);
    let missing = fixture.command(&["phasegate-no-such-program"], Vec::new(), ten).await;
    assert!(failure(&missing).starts_with("cannot start `phasegate-no-such-program`"), "{missing:?}");
    assert_eq!(failure(&fixture.command(&[], Vec::new(), ten).await), "the command has no program to run");
}

#[tokio::test]
async fn a_command_past_its_timeout_is_killed() {
    let fixture = Fixture::with_commands(true).await;
    let outcome = fixture.command(&["sleep", "5"], Vec::new(), Duration::from_secs(1)).await;
    assert_eq!(failure(&outcome), "`sleep` did not finish within 1s and was killed");
}

#[tokio::test]
async fn commands_get_secrets_in_their_environment_but_never_give_them_back() {
    let fixture = Fixture::with_commands(true).await;
    let env = vec![
        ("EDR_TOKEN".to_string(), Text::Secret { secret: "token".into(), prefix: None }),
        ("MODE".to_string(), Text::Literal("isolate".into())),
    ];
    let outcome = fixture.command(&["printenv", "EDR_TOKEN", "MODE"], env, Duration::from_secs(10)).await;
    assert_eq!(
        outcome,
        Outcome::Command { exit_code: 0, stdout: "[secret `token`]\nisolate\n".into(), stderr: String::new() }
    );
    let env = vec![("EDR_TOKEN".to_string(), Text::Secret { secret: "edr".into(), prefix: None })];
    let outcome = fixture.command(&["true"], env, Duration::from_secs(10)).await;
    assert_eq!(
        failure(&outcome),
        "secret `edr` has no value (needed for environment variable `EDR_TOKEN`); declare it under `secrets:` in the configuration, with an environment variable or file that holds it"
    );
}

#[tokio::test]
async fn long_command_output_is_cut() {
    let fixture = Fixture::with_commands(true).await;
    let outcome = fixture.command(&["head", "-c", "100000", "/dev/zero"], Vec::new(), Duration::from_secs(10)).await;
    let Outcome::Command { exit_code: 0, stdout, .. } = outcome else { panic!("`head` runs") };
    assert!(stdout.ends_with("[phasegate: output cut at 65536 of 100000 bytes]"), "{}", &stdout[stdout.len() - 80..]);
}

#[tokio::test]
async fn commands_are_refused_unless_enabled() {
    let fixture = Fixture::new().await;
    let outcome = fixture.command(&["true"], Vec::new(), Duration::from_secs(10)).await;
    assert_eq!(failure(&outcome), "commands are disabled; enable them with `commands: true` in the configuration");
}
