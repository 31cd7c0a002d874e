//! The `hookbridge` command line: `serve`, `check`, `routes`, `send`, `replay`, `discard`, `fic`,
//! `healthcheck`. It parses the arguments ([`hookbridge::cli::args`]) and runs the command from
//! the library ([`hookbridge::cli::commands`], [`hookbridge::cli::replay`]).

use std::process::ExitCode;

use clap::Parser as _;
use hookbridge::cli::args::{Cli, Command};
use hookbridge::cli::{commands, replay};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve {
        config: None,
        watch: false,
    }) {
        Command::Check { config } => commands::check(&config),
        Command::Routes { config, ty, source } => commands::routes(&config, &ty, source.as_deref()),
        Command::Send {
            config,
            source,
            ty,
            data,
            url,
            key,
            company,
        } => commands::send(&config, &source, ty, data, url, key, company),
        Command::Healthcheck { url } => commands::healthcheck(&url),
        Command::Replay { select, parked, to } => replay::replay_command(select, parked, to),
        Command::Discard { select, all } => replay::discard_command(select, all),
        Command::Fic { command } => commands::fic(command),
        Command::Serve { config, watch } => commands::serve(config, watch),
    }
}
