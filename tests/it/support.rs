//! Helpers shared by the integration tests: a builder for running the `phasegate` binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root, where `runbooks/` and `templates/` live.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `phasegate` with arguments and checks its output: `Cli::new().args([..]).stdout_has(..).fails()`.
pub struct Cli {
    command: Command,
    output: Option<Output>,
}

impl Cli {
    pub fn new() -> Cli {
        let mut command = Command::new(env!("CARGO_BIN_EXE_phasegate"));
        command.current_dir(root()).env_remove("PHASEGATE_TEMPLATES");
        Cli { command, output: None }
    }

    pub fn args<I, S>(mut self, args: I) -> Cli
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.command.args(args);
        self
    }

    pub fn current_dir(mut self, dir: &Path) -> Cli {
        self.command.current_dir(dir);
        self
    }

    fn output(&mut self) -> &Output {
        if self.output.is_none() {
            self.output = Some(self.command.output().expect("the phasegate binary runs"));
        }
        self.output.as_ref().expect("just set")
    }

    pub fn stdout(&mut self) -> String {
        String::from_utf8_lossy(&self.output().stdout).into_owned()
    }

    pub fn stderr(&mut self) -> String {
        String::from_utf8_lossy(&self.output().stderr).into_owned()
    }

    pub fn stdout_has(mut self, text: &str) -> Cli {
        let stdout = self.stdout();
        assert!(stdout.contains(text), "stdout lacks {text:?}:\n{stdout}\nstderr:\n{}", self.stderr());
        self
    }

    pub fn stderr_has(mut self, text: &str) -> Cli {
        let stderr = self.stderr();
        assert!(stderr.contains(text), "stderr lacks {text:?}:\n{stderr}");
        self
    }

    /// Asserts the exit status and returns the builder for further checks.
    pub fn status(mut self, expected: i32) -> Cli {
        let status = self.output().status.code();
        assert_eq!(status, Some(expected), "stdout:\n{}\nstderr:\n{}", self.stdout(), self.stderr());
        self
    }

    pub fn succeeds(self) -> Cli {
        self.status(0)
    }

    pub fn fails(self) -> Cli {
        self.status(1)
    }
}
