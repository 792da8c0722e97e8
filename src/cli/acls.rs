//! `eddy acls`: the ACLs an application needs, as `kafka-acls.sh` commands
//! or JSON, or created through the admin API.

use std::time::Duration;

use crate::config::Registry;
use crate::kafka::acls::{create_acls, kafka_acls_commands, required_acls};

use super::app_file::AppFile;
use super::CliError;

/// Arguments of `acls`.
#[derive(clap::Args)]
pub struct AclsArgs {
    #[command(flatten)]
    app: AppFile,
    /// The principal to grant (default `User:<kafka.sasl.username>`).
    #[arg(long)]
    principal: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "commands")]
    format: AclsFormat,
    /// Creates the ACLs through the admin API instead of printing them,
    /// connecting as `--admin-user` with the file's TLS settings.
    #[arg(long, requires = "admin_user")]
    apply: bool,
    /// The SCRAM user that creates the ACLs (one allowed to alter them).
    #[arg(long)]
    admin_user: Option<String>,
    /// The environment variable holding the admin user's password.
    #[arg(long, default_value = "EDDY_ADMIN_PASSWORD")]
    admin_password_env: String,
}

#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
enum AclsFormat {
    /// `kafka-acls.sh` commands, one per resource.
    Commands,
    /// A JSON array of ACLs.
    Json,
}

pub(super) fn run(args: AclsArgs, registry: &Registry) -> Result<(), CliError> {
    // Printing what a file needs reads none of its secrets.
    let pipeline = args.app.load(registry, false)?;
    let config = pipeline.config;
    let Some(principal) = args.principal.or_else(|| config.principal()) else {
        return Err(CliError::Usage(
            "eddy acls: give --principal (the file has no kafka.sasl.username)".into(),
        ));
    };
    let acls = required_acls(&pipeline.topology, &config, &principal);
    let servers = args.app.servers(&config);
    if args.apply {
        let Some(servers) = servers else {
            return Err(CliError::Usage(
                "eddy acls --apply: give --brokers (or application.brokers)".into(),
            ));
        };
        let user = args.admin_user.unwrap_or_default();
        let password = std::env::var(&args.admin_password_env).map_err(|_| {
            CliError::Usage(format!(
                "eddy acls --apply: environment variable {} (--admin-password-env) is not set",
                args.admin_password_env
            ))
        })?;
        let mut client = config.admin_client_config(&servers);
        let protocol = match client.get("security.protocol") {
            Some("ssl" | "sasl_ssl") => "sasl_ssl",
            _ => "sasl_plaintext",
        };
        let mechanism = client
            .get("sasl.mechanism")
            .unwrap_or("SCRAM-SHA-512")
            .to_owned();
        client
            .set("security.protocol", protocol)
            .set("sasl.mechanism", mechanism)
            .set("sasl.username", &user)
            .set("sasl.password", password);
        create_acls(&client, &acls, Duration::from_secs(30))?;
        eprintln!("created {} ACLs for {principal} as User:{user}", acls.len());
        return Ok(());
    }
    match args.format {
        AclsFormat::Json => {
            let json = serde_json::to_string_pretty(&acls).expect("ACLs serialize");
            println!("{json}");
        }
        AclsFormat::Commands => {
            let servers = servers.unwrap_or_else(|| "<bootstrap servers>".into());
            for command in kafka_acls_commands(&acls, &servers) {
                println!("{command}");
            }
        }
    }
    Ok(())
}
