//! Writes the synthetic shapes dataset:
//! `cargo run --release --example make_shapes -- OUT_DIR [TRAIN VAL SIZE [MAX_OBJECTS [MIN_SIDE MAX_SIDE]]]`.
fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let out = args.get(1).map(String::as_str).unwrap_or("datasets/shapes");
    let mut config = ember::data::synthetic::SyntheticConfig::default();
    if let Some(n) = args.get(2) {
        config.train_images = n.parse()?;
    }
    if let Some(n) = args.get(3) {
        config.val_images = n.parse()?;
    }
    if let Some(n) = args.get(4) {
        config.size = n.parse()?;
    }
    if let Some(n) = args.get(5) {
        config.objects.1 = n.parse()?;
    }
    if let (Some(a), Some(b)) = (args.get(6), args.get(7)) {
        config.object_size = (a.parse()?, b.parse()?);
    }
    let yaml = ember::data::synthetic::generate(out.as_ref(), &config)?;
    println!("{}", yaml.display());
    Ok(())
}
