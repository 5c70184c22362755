//! The `device` setting: a list of compute devices in Ultralytics' spellings (`cpu`, `0`, `0,1`, `cuda:0`,
//! `[0, 1]` in YAML) plus ember's `vulkan` (the best adapter) and `vulkan:N` (the N-th, as
//! `ember info --device vulkan` lists them). Several devices train data-parallel, one process each
//! ([`Devices::for_local_rank`]); `cpu,cpu` runs two CPU processes. The commands that run on one device ask for it
//! with [`Devices::one`].

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_yaml::Value;

/// One compute device, as named (whether it exists is checked when a command resolves it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSpec {
    /// The CPU (`cpu`); listed more than once (`cpu,cpu`), one CPU process per entry in a data-parallel run.
    Cpu,
    /// A CUDA GPU by the driver's index.
    Cuda(usize),
    /// A Vulkan adapter by its place in the adapter list; `None` is the best one.
    Vulkan(Option<usize>),
}

impl DeviceSpec {
    fn parse(text: &str) -> Result<DeviceSpec, String> {
        let t = text.trim().to_ascii_lowercase();
        let not_understood =
            || format!("device '{t}' not understood: use cpu, 0, 1, ..., cuda:0, vulkan or vulkan:N (lists: 0,1)");
        if t == "cpu" {
            return Ok(DeviceSpec::Cpu);
        }
        if t == "cuda" {
            return Ok(DeviceSpec::Cuda(0));
        }
        if let Some(rest) = t.strip_prefix("vulkan") {
            return match rest.strip_prefix(':') {
                None if rest.is_empty() => Ok(DeviceSpec::Vulkan(None)),
                Some(n) => n
                    .parse()
                    .map(|n| DeviceSpec::Vulkan(Some(n)))
                    .map_err(|_| format!("device '{t}': expected vulkan or vulkan:N with N an adapter number")),
                None => Err(not_understood()),
            };
        }
        let digits = t.strip_prefix("cuda:").unwrap_or(&t);
        digits.parse().map(DeviceSpec::Cuda).map_err(|_| not_understood())
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Cuda(i) => write!(f, "{i}"),
            DeviceSpec::Vulkan(None) => f.write_str("vulkan"),
            DeviceSpec::Vulkan(Some(i)) => write!(f, "vulkan:{i}"),
        }
    }
}

/// The `device` setting: empty when not given (the CPU).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Value", into = "Value")]
pub struct Devices(pub Vec<DeviceSpec>);

impl Devices {
    /// The one device a command runs on: the CPU when none is named; a list is refused (for now).
    pub fn one(&self) -> anyhow::Result<DeviceSpec> {
        match self.0.as_slice() {
            [] => Ok(DeviceSpec::Cpu),
            [one] => Ok(*one),
            many => anyhow::bail!(
                "--device {self} names {} devices, and this command runs on one device: pick one, e.g. --device {}",
                many.len(),
                many[0]
            ),
        }
    }

    /// The device of the process with `local_rank` on its machine in a data-parallel run: the `local_rank`-th of
    /// the list, or the one device every process shares when one (or none) is named.
    pub fn for_local_rank(&self, local_rank: usize) -> anyhow::Result<DeviceSpec> {
        match self.0.len() {
            0 | 1 => self.one(),
            n => self.0.get(local_rank).copied().ok_or_else(|| {
                anyhow::anyhow!(
                    "process {local_rank} on this machine has no device: --device {self} names {n}, and the launcher \
                     started more processes here (start one per device, e.g. mpirun -np {n})"
                )
            }),
        }
    }

    fn parse_list(text: &str) -> Result<Devices, String> {
        let inner = text.trim().trim_start_matches('[').trim_end_matches(']');
        let specs = inner
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(DeviceSpec::parse)
            .collect::<Result<Vec<_>, _>>()?;
        Devices::checked(specs)
    }

    fn checked(specs: Vec<DeviceSpec>) -> Result<Devices, String> {
        // `cpu,cpu`: several CPU processes (one machine's cores shared), for data-parallel runs without a GPU.
        let all_cpu = specs.iter().all(|d| *d == DeviceSpec::Cpu);
        if specs.len() > 1 && specs.contains(&DeviceSpec::Cpu) && !all_cpu {
            return Err("device: cpu cannot be listed with other devices".into());
        }
        for (i, d) in specs.iter().enumerate() {
            if !all_cpu && specs[..i].contains(d) {
                return Err(format!("device: {d} is listed twice"));
            }
        }
        Ok(Devices(specs))
    }
}

impl TryFrom<Value> for Devices {
    type Error = String;
    fn try_from(v: Value) -> Result<Self, String> {
        let scalar = |v: &Value| match v {
            Value::Number(n) => Ok(n.to_string()),
            Value::String(s) => Ok(s.clone()),
            other => Err(format!("device: expected a device or a list of devices, got {other:?}")),
        };
        match &v {
            Value::Null => Ok(Devices::default()),
            Value::Sequence(items) => {
                let specs = items.iter().map(|i| scalar(i).and_then(|s| DeviceSpec::parse(&s)));
                Devices::checked(specs.collect::<Result<_, _>>()?)
            }
            other => Devices::parse_list(&scalar(other)?),
        }
    }
}

impl From<Devices> for Value {
    fn from(d: Devices) -> Value {
        if d.0.is_empty() {
            Value::Null
        } else {
            Value::String(d.to_string())
        }
    }
}

impl fmt::Display for Devices {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("cpu");
        }
        let names: Vec<String> = self.0.iter().map(DeviceSpec::to_string).collect();
        f.write_str(&names.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<Devices, String> {
        Devices::try_from(serde_yaml::from_str::<Value>(yaml).unwrap())
    }

    #[test]
    fn ultralytics_spellings_and_vulkan() {
        use DeviceSpec::*;
        assert_eq!(parse("~").unwrap(), Devices(vec![]));
        assert_eq!(parse("cpu").unwrap(), Devices(vec![Cpu]));
        assert_eq!(parse("CPU").unwrap(), Devices(vec![Cpu]));
        assert_eq!(parse("0").unwrap(), Devices(vec![Cuda(0)]));
        assert_eq!(parse("cuda:1").unwrap(), Devices(vec![Cuda(1)]));
        assert_eq!(parse("cuda").unwrap(), Devices(vec![Cuda(0)]));
        assert_eq!(parse("'0,1'").unwrap(), Devices(vec![Cuda(0), Cuda(1)]));
        assert_eq!(parse("[0, 1]").unwrap(), Devices(vec![Cuda(0), Cuda(1)]));
        assert_eq!(parse("'[0,1]'").unwrap(), Devices(vec![Cuda(0), Cuda(1)]));
        assert_eq!(parse("vulkan").unwrap(), Devices(vec![Vulkan(None)]));
        assert_eq!(parse("vulkan:0,vulkan:1").unwrap(), Devices(vec![Vulkan(Some(0)), Vulkan(Some(1))]));
        assert!(parse("mps").unwrap_err().contains("not understood"));
        assert!(parse("vulkan:x").unwrap_err().contains("vulkan:N"));
        assert!(parse("vulkanx").unwrap_err().contains("not understood"));
        assert!(parse("cpu,0").unwrap_err().contains("cpu cannot be listed"));
        assert!(parse("0,0").unwrap_err().contains("twice"));
        assert_eq!(parse("cpu,cpu").unwrap(), Devices(vec![Cpu, Cpu]));
    }

    #[test]
    fn each_local_rank_takes_its_device() {
        let two = parse("0,1").unwrap();
        assert_eq!(two.for_local_rank(1).unwrap(), DeviceSpec::Cuda(1));
        let e = two.for_local_rank(2).unwrap_err().to_string();
        assert!(e.contains("process 2") && e.contains("names 2"), "{e}");
        assert_eq!(parse("vulkan").unwrap().for_local_rank(3).unwrap(), DeviceSpec::Vulkan(None));
        assert_eq!(parse("~").unwrap().for_local_rank(1).unwrap(), DeviceSpec::Cpu);
    }

    #[test]
    fn one_device_commands_refuse_a_list() {
        assert_eq!(parse("~").unwrap().one().unwrap(), DeviceSpec::Cpu);
        assert_eq!(parse("1").unwrap().one().unwrap(), DeviceSpec::Cuda(1));
        let e = parse("0,1").unwrap().one().unwrap_err().to_string();
        assert!(e.contains("0,1") && e.contains("2 devices") && e.contains("--device 0"), "{e}");
    }

    #[test]
    fn written_back_as_given() {
        for text in ["cpu", "0,1", "vulkan:2"] {
            let d = Devices::parse_list(text).unwrap();
            assert_eq!(Value::from(d.clone()), Value::String(text.into()));
            assert_eq!(Devices::try_from(Value::from(d.clone())).unwrap(), d);
        }
        assert_eq!(Value::from(Devices::default()), Value::Null);
    }
}
