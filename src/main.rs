use std::process::ExitCode;

use ember::cli::{self, CliError, Mode};
use ember::config::foreign::ignored_line;
use ember::config::Settings;

fn main() -> ExitCode {
    ember::backend::keep_freed_memory();
    let invocation = match cli::parse(std::env::args().collect()) {
        Ok(inv) => inv,
        Err(CliError::Clap(e)) => e.exit(),
        Err(CliError::Setting(e)) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    init_logging();
    let result = Settings::resolve(&invocation.overrides).and_then(|settings| {
        if !settings.ignored.is_empty() {
            println!("{}", ignored_line(&settings.ignored));
        }
        ember::backend::on_compute_pool(|| run(invocation.mode, &settings))
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(mode: Mode, settings: &Settings) -> anyhow::Result<()> {
    use ember::commands;
    match mode {
        Mode::Check => commands::check::run(settings),
        Mode::Info => commands::info::run(settings),
        Mode::Train => match commands::train::processes_to_launch(settings) {
            Some(processes) => ember::dist::launch::relaunch(processes),
            None => commands::train::run(settings).map(|_| ()),
        },
        Mode::Val => commands::val::run(settings).map(|_| ()),
        Mode::Export => commands::export::run(settings).map(|_| ()),
        Mode::Predict => commands::predict::run(settings).map(|_| ()),
    }
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("EMBER_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .without_time()
        .with_writer(std::io::stderr)
        .init();
}
