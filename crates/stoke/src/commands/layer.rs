//! `stoke layer ...` and `stoke image ...`: library layers of the account, root file system images of the
//! node.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use base64::Engine;
use reqwest::Method;
use serde_json::json;
use stoke_server::http::layers::{ImageList, ImageView, LayerList, LayerVersionList, LayerVersionView};

use super::function::{load_code, upload_body};
use crate::client::{segment, Client};
use crate::output::{print_fields, print_json, table, Format};
use crate::GlobalArgs;

#[derive(Debug, clap::Args)]
pub struct LayerArgs {
    #[command(subcommand)]
    command: LayerCommand,
}

#[derive(Debug, clap::Subcommand)]
enum LayerCommand {
    /// Publish a new version of a layer from a directory, .zip or .tar.gz laid out as Lambda's /opt
    /// (python/, nodejs/node_modules/, bin/, lib/): `stoke layer publish numpy ./numpy-layer`.
    Publish {
        name: String,
        #[arg(value_name = "DIR|ARCHIVE")]
        code: PathBuf,
        #[arg(long)]
        description: Option<String>,
        /// A runtime the layer is built for; repeat for more (informational).
        #[arg(long = "runtime", value_name = "RUNTIME")]
        runtimes: Vec<String>,
    },
    /// List the account's layers with their newest versions.
    Ls,
    /// List a layer's versions.
    Versions { name: String },
    /// Show one version: `stoke layer get numpy:3`.
    Get {
        #[arg(value_name = "NAME:VERSION")]
        layer: String,
    },
    /// Delete a version; functions that list it keep running on it.
    Rm {
        #[arg(value_name = "NAME:VERSION")]
        layer: String,
    },
}

fn name_and_version(layer: &str) -> Result<(String, String)> {
    match layer.rsplit_once(':') {
        Some((n, v)) if !n.is_empty() && !v.is_empty() => Ok((n.to_string(), v.to_string())),
        _ => bail!("give the layer as NAME:VERSION, e.g. numpy:3 (see `stoke layer versions NAME`)"),
    }
}

fn show_layer(global: &GlobalArgs, l: LayerVersionView, raw: &serde_json::Value) {
    if global.output == Format::Json {
        print_json(raw);
        return;
    }
    print_fields(&[
        ("layer", l.reference),
        ("arn", l.arn),
        ("runtimes", l.compatible_runtimes.join(", ")),
        ("code", format!("{} ({} bytes)", l.code_sha256, l.code_size)),
        ("created", l.created),
        ("description", l.description),
    ]);
}

fn layer_table(global: &GlobalArgs, rows: &[LayerVersionView], raw: &serde_json::Value) {
    if global.output == Format::Json {
        print_json(raw);
        return;
    }
    let mut t = table(&["layer", "runtimes", "size", "created", "description"]);
    for l in rows {
        t.add_row(vec![
            l.reference.clone(),
            l.compatible_runtimes.join(", "),
            l.code_size.to_string(),
            l.created.clone(),
            l.description.clone(),
        ]);
    }
    println!("{t}");
}

pub fn run_layer(global: &GlobalArgs, args: LayerArgs) -> Result<()> {
    let client = Client::from_args(global)?;
    match args.command {
        LayerCommand::Publish { name, code, description, runtimes } => {
            let archive = load_code(&code)?;
            let body = json!({
                "code_base64": base64::engine::general_purpose::STANDARD.encode(&archive),
                "description": description.unwrap_or_default(),
                "compatible_runtimes": runtimes,
            });
            let req = client
                .request(Method::POST, &format!("/v1/layers/{}/versions", segment(&name)))
                .header("content-type", "application/json")
                .body(upload_body(serde_json::to_vec(&body)?));
            let (l, raw): (LayerVersionView, _) = client.json(req)?;
            show_layer(global, l, &raw);
        }
        LayerCommand::Ls => {
            let (list, raw): (LayerList, _) = client.json(client.request(Method::GET, "/v1/layers"))?;
            layer_table(global, &list.layers, &raw);
        }
        LayerCommand::Versions { name } => {
            let path = format!("/v1/layers/{}/versions", segment(&name));
            let (list, raw): (LayerVersionList, _) = client.json(client.request(Method::GET, &path))?;
            layer_table(global, &list.versions, &raw);
        }
        LayerCommand::Get { layer } => {
            let (name, version) = name_and_version(&layer)?;
            let path = format!("/v1/layers/{}/versions/{}", segment(&name), segment(&version));
            let (l, raw): (LayerVersionView, _) = client.json(client.request(Method::GET, &path))?;
            show_layer(global, l, &raw);
        }
        LayerCommand::Rm { layer } => {
            let (name, version) = name_and_version(&layer)?;
            let path = format!("/v1/layers/{}/versions/{}", segment(&name), segment(&version));
            client.send(client.request(Method::DELETE, &path))?;
            eprintln!("deleted layer {name}:{version} (functions that list it keep running on it)");
        }
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct ImageArgs {
    #[command(subcommand)]
    command: ImageCommand,
}

#[derive(Debug, clap::Subcommand)]
enum ImageCommand {
    /// Import a root file system from a tarball (plain or .tar.gz; e.g. `docker export`, debootstrap) as a
    /// named image functions can run on (`--base-image NAME`). Admin only.
    Import {
        name: String,
        #[arg(value_name = "TARBALL")]
        tarball: PathBuf,
    },
    /// List imported images (`default`, the host's own, is always there).
    Ls,
    /// Show one image.
    Get { name: String },
    /// Delete an image no function runs on. Admin only.
    Rm { name: String },
}

fn show_image(global: &GlobalArgs, i: ImageView, raw: &serde_json::Value) {
    if global.output == Format::Json {
        print_json(raw);
        return;
    }
    print_fields(&[
        ("image", i.name),
        ("tarball", format!("{} ({} bytes)", i.sha256, i.size)),
        ("unpacked", format!("{} bytes", i.unpacked_bytes)),
        ("created", i.created),
    ]);
}

pub fn run_image(global: &GlobalArgs, args: ImageArgs) -> Result<()> {
    let client = Client::from_args(global)?;
    match args.command {
        ImageCommand::Import { name, tarball } => {
            let bytes = std::fs::read(&tarball).with_context(|| format!("cannot read {}", tarball.display()))?;
            let req = client
                .request(Method::PUT, &format!("/v1/images/{}", segment(&name)))
                .header("content-type", "application/x-tar")
                .body(upload_body(bytes));
            let (i, raw): (ImageView, _) = client.json(req)?;
            show_image(global, i, &raw);
        }
        ImageCommand::Ls => {
            let (list, raw): (ImageList, _) = client.json(client.request(Method::GET, "/v1/images"))?;
            if global.output == Format::Json {
                print_json(&raw);
                return Ok(());
            }
            let mut t = table(&["image", "unpacked bytes", "created"]);
            t.add_row(vec!["default".to_string(), "(the host's /usr, read-only)".to_string(), String::new()]);
            for i in list.images {
                t.add_row(vec![i.name, i.unpacked_bytes.to_string(), i.created]);
            }
            println!("{t}");
        }
        ImageCommand::Get { name } => {
            let (i, raw): (ImageView, _) =
                client.json(client.request(Method::GET, &format!("/v1/images/{}", segment(&name))))?;
            show_image(global, i, &raw);
        }
        ImageCommand::Rm { name } => {
            client.send(client.request(Method::DELETE, &format!("/v1/images/{}", segment(&name))))?;
            eprintln!("deleted image {name}");
        }
    }
    Ok(())
}
