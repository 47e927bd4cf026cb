//! The rows of `service ls`, `service ps`, `node ls` and `node ps`, and the fields
//! `--format` templates name in them: Docker's names for Docker's columns (`ID`, `Name`,
//! `Replicas`, `DesiredState`, `Hostname`, ...), then knit's own (`Health`, `Epoch`, ...).
//! `--format json` and `{{json .}}` print the rows as the admin API gives them.

use crate::format::output::Record;
use crate::format::template::{Field, Row};
use crate::telemetry::Telemetry;
use crate::wire::word;
use crate::wire::{ConfigSummary, NodeSummary, SecretSummary, ServiceSummary, TaskRow};

impl Row for SecretSummary {
    const COMMAND: &'static str = "secret ls";
    const FIELDS: &'static [Field] = &[
        Field::new("ID", "ID"),
        Field::new("Name", "NAME"),
        Field::new("CreatedAt", "CREATED"),
        Field::new("Size", "SIZE"),
        Field::new("Services", "SERVICES"),
    ];

    fn field(&self, name: &str) -> String {
        match name {
            "ID" | "Name" => self.name.clone(),
            "CreatedAt" => crate::clock::ago(self.created_at_ms),
            "Size" => format!("{} B", self.size_bytes),
            "Services" => self.services.join(","),
            _ => String::new(),
        }
    }

    fn json(&self) -> serde_json::Result<String> {
        serde_json::to_string(self)
    }
}

impl Record for SecretSummary {
    const TABLE: &'static str = r"table {{.Name}}\t{{.CreatedAt}}\t{{.Size}}\t{{.Services}}";
}

impl Row for ConfigSummary {
    const COMMAND: &'static str = "config ls";
    const FIELDS: &'static [Field] = &[
        Field::new("ID", "ID"),
        Field::new("Name", "NAME"),
        Field::new("CreatedAt", "CREATED"),
        Field::new("Size", "SIZE"),
        Field::new("Services", "SERVICES"),
    ];

    fn field(&self, name: &str) -> String {
        match name {
            "ID" | "Name" => self.name.clone(),
            "CreatedAt" => crate::clock::ago(self.created_at_ms),
            "Size" => format!("{} B", self.size_bytes),
            "Services" => self.services.join(","),
            _ => String::new(),
        }
    }

    fn json(&self) -> serde_json::Result<String> {
        serde_json::to_string(self)
    }
}

impl Record for ConfigSummary {
    const TABLE: &'static str = r"table {{.Name}}\t{{.CreatedAt}}\t{{.Size}}\t{{.Services}}";
}

/// How many characters of a node id the `node ls` table shows.
const SHORT_ID_CHARS: usize = 12;

impl Row for ServiceSummary {
    const COMMAND: &'static str = "service ls";
    const FIELDS: &'static [Field] = &[
        Field::new("ID", "ID"),
        Field::new("Name", "NAME"),
        Field::new("Mode", "MODE"),
        Field::new("Replicas", "REPLICAS"),
        Field::new("Image", "IMAGE"),
        Field::new("Ports", "PORTS"),
        Field::new("Running", "RUNNING"),
        Field::new("Desired", "DESIRED"),
        Field::new("Version", "VERSION"),
        Field::new("State", "STATE"),
        Field::new("VIP", "VIP"),
    ];

    fn field(&self, name: &str) -> String {
        match name {
            // A service's name is its id: `-q` prints it, every command takes it.
            "ID" | "Name" => self.name.clone(),
            "Mode" => self.mode.clone(),
            "Replicas" => format!("{}/{}", self.running, self.replicas),
            "Image" => self.image.clone(),
            "Ports" => self.ports.join(","),
            "Running" => self.running.to_string(),
            "Desired" => self.replicas.to_string(),
            "Version" => self.version.to_string(),
            "State" => self
                .invalid
                .as_ref()
                .map_or_else(|| "ok".to_owned(), |why| format!("invalid: {why}")),
            "VIP" => self.vip.clone().unwrap_or_default(),
            _ => String::new(),
        }
    }

    fn json(&self) -> serde_json::Result<String> {
        serde_json::to_string(self)
    }
}

impl Record for ServiceSummary {
    const TABLE: &'static str =
        r"table {{.Name}}\t{{.Mode}}\t{{.Replicas}}\t{{.Image}}\t{{.Ports}}\t{{.State}}";
}

/// A task of `service ps` or `node ps`, with what its row does not say.
#[derive(Debug, Clone)]
pub(crate) struct Task {
    pub(crate) row: TaskRow,
    /// The service it belongs to.
    pub(crate) service: String,
    /// The service's image (its command, for a process service) as the spec now says: a
    /// replica of an older version may run another.
    pub(crate) image: String,
}

impl Row for Task {
    const COMMAND: &'static str = "service ps` and `node ps";
    const FIELDS: &'static [Field] = &[
        Field::new("ID", "ID"),
        Field::new("Name", "NAME"),
        Field::new("Image", "IMAGE"),
        Field::new("Node", "NODE"),
        Field::new("DesiredState", "DESIRED STATE"),
        Field::new("CurrentState", "CURRENT STATE"),
        Field::new("Error", "ERROR"),
        Field::new("Ports", "PORTS"),
        Field::new("Slot", "SLOT"),
        Field::new("Service", "SERVICE"),
        Field::new("NodeID", "NODE ID"),
        Field::new("Health", "HEALTH"),
        Field::new("Version", "VERSION"),
        Field::new("Current", "CURRENT"),
        Field::new("CPU", "CPU"),
    ];

    fn field(&self, name: &str) -> String {
        let t = &self.row;
        match name {
            "ID" => t.id.clone(),
            "Name" | "Slot" => t.slot.clone(),
            "Image" => self.image.clone(),
            "Node" => t.node.clone(),
            "DesiredState" => t.desired_state.clone(),
            "CurrentState" => t.state.clone(),
            "Error" => t.error.clone().unwrap_or_default(),
            "Ports" => t.host_port.map(|p| p.to_string()).unwrap_or_default(),
            "Service" => self.service.clone(),
            "NodeID" => t.node_id.clone(),
            "Health" => t.health.clone(),
            // No replica yet (pending or just assigned): no version runs.
            "Version" if t.spec_version == 0 => "-".to_owned(),
            "Version" => t.spec_version.to_string(),
            "Current" => t.current.to_string(),
            // Percent of one core, as `docker stats` shows it.
            "CPU" => t.cpu_millis.map_or_else(
                || "-".to_owned(),
                |m| format!("{:.0}%", f64::from(m) / 10.0),
            ),
            _ => String::new(),
        }
    }

    fn json(&self) -> serde_json::Result<String> {
        serde_json::to_string(&self.row)
    }
}

impl Record for Task {
    const TABLE: &'static str = r"table {{.Slot}}\t{{.Node}}\t{{.DesiredState}}\t{{.CurrentState}}\t{{.Health}}\t{{.Version}}\t{{.Ports}}\t{{.Error}}";
}

impl Row for NodeSummary {
    const COMMAND: &'static str = "node ls";
    const FIELDS: &'static [Field] = &[
        Field::new("ID", "ID"),
        Field::new("Self", "SELF"),
        Field::new("Hostname", "HOSTNAME"),
        Field::new("Status", "STATUS"),
        Field::new("Availability", "AVAILABILITY"),
        Field::new("ShortID", "ID"),
        Field::new("Name", "NAME"),
        Field::new("Addr", "ADDR"),
        Field::new("State", "STATE"),
        Field::new("Epoch", "EPOCH"),
        Field::new("Version", "VERSION"),
        Field::new("Replicas", "REPLICAS"),
        Field::new("CPU", "CPU"),
        Field::new("Memory", "MEM"),
        Field::new("Disk", "DISK"),
        Field::new("Labels", "LABELS"),
    ];

    fn field(&self, name: &str) -> String {
        let t = self.telemetry.as_ref();
        match name {
            "ID" => self.id.clone(),
            "Self" => self.is_self.to_string(),
            "Hostname" | "Name" => self.name.clone(),
            "Status" | "State" => word(&self.state),
            "Availability" => word(&self.availability),
            // Marked ` *` on the node that answered, as `docker node ls` marks it.
            "ShortID" => format!(
                "{}{}",
                self.id.chars().take(SHORT_ID_CHARS).collect::<String>(),
                if self.is_self { " *" } else { "" }
            ),
            "Addr" => self.addr.clone(),
            "Epoch" => self.epoch.to_string(),
            "Version" => self.version.clone().unwrap_or_default(),
            "Replicas" => self.replicas.to_string(),
            "CPU" => percent(t.map(|t| f64::from(t.cpu_percent))),
            "Memory" => percent(t.and_then(Telemetry::memory_percent)),
            "Disk" => percent(t.and_then(Telemetry::disk_percent)),
            "Labels" => {
                let labels: Vec<String> = self
                    .labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                labels.join(",")
            }
            _ => String::new(),
        }
    }

    fn json(&self) -> serde_json::Result<String> {
        serde_json::to_string(self)
    }
}

impl Record for NodeSummary {
    const TABLE: &'static str = r"table {{.ShortID}}\t{{.Name}}\t{{.Addr}}\t{{.State}}\t{{.Availability}}\t{{.Epoch}}\t{{.Replicas}}\t{{.CPU}}\t{{.Memory}}\t{{.Disk}}\t{{.Labels}}";

    fn notes(&self) -> Vec<String> {
        let condition = self
            .condition
            .as_ref()
            .map(|c| c.note.clone())
            .filter(|n| !n.is_empty());
        condition.into_iter().chain(self.minority.clone()).collect()
    }
}

fn percent(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}%"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::Format;
    use crate::format::output::render;
    use crate::format::template::Template;

    fn default_table_names_known_fields<R: Record>() {
        let template = Template::parse(R::TABLE).expect("the table parses");
        assert!(template.is_table(), "{}", R::COMMAND);
        template.check::<R>().expect("the table names known fields");
    }

    #[test]
    fn every_default_table_names_known_fields() {
        default_table_names_known_fields::<ServiceSummary>();
        default_table_names_known_fields::<Task>();
        default_table_names_known_fields::<NodeSummary>();
        default_table_names_known_fields::<SecretSummary>();
        default_table_names_known_fields::<ConfigSummary>();
    }

    fn service(name: &str, image: &str) -> ServiceSummary {
        ServiceSummary {
            name: name.into(),
            mode: "replicated".into(),
            replicas: 3,
            running: 2,
            image: image.into(),
            ports: vec!["8080:80/tcp".into()],
            version: 4,
            labels: Default::default(),
            invalid: None,
            vip: None,
        }
    }

    #[test]
    fn service_ls_formats() {
        let rows = [
            service("web", "nginx:1.27"),
            service("a-long-name", "busybox"),
        ];
        assert_eq!(
            render(&rows, &Format::Table).unwrap(),
            "NAME          MODE         REPLICAS   IMAGE        PORTS         STATE\n\
             web           replicated   2/3        nginx:1.27   8080:80/tcp   ok\n\
             a-long-name   replicated   2/3        busybox      8080:80/tcp   ok\n"
        );
        let format: Format = "{{.Name}} {{.Replicas}}".parse().unwrap();
        assert_eq!(
            render(&rows, &format).unwrap(),
            "web 2/3\na-long-name 2/3\n"
        );
        let format: Format = r"table {{.ID}}\t{{.Image}}".parse().unwrap();
        assert_eq!(
            render(&rows, &format).unwrap(),
            "ID            IMAGE\nweb           nginx:1.27\na-long-name   busybox\n"
        );
    }

    #[test]
    fn json_is_one_object_per_line() {
        let rows = [service("web", "nginx"), service("db", "postgres")];
        let text = render(&rows, &Format::Json).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        for (line, row) in lines.iter().zip(&rows) {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(value["name"], row.name.as_str());
        }
        assert_eq!(render::<ServiceSummary>(&[], &Format::Json).unwrap(), "");
        // `{{json .}}` prints the same objects.
        let format: Format = "{{json .}}".parse().unwrap();
        assert_eq!(render(&rows, &format).unwrap(), text);
    }

    #[test]
    fn an_unknown_field_is_an_error_naming_the_fields() {
        let format: Format = "{{.Name}} {{.Replics}}".parse().unwrap();
        let err = render(&[service("web", "nginx")], &format).unwrap_err();
        let message = err.to_string();
        assert!(message.contains(".Replics"), "{message}");
        assert!(
            message.contains("ID, Name, Mode, Replicas, Image, Ports"),
            "{message}"
        );
        // Also with no rows: the mistake is reported, not hidden by an empty list.
        assert!(render::<ServiceSummary>(&[], &format).is_err());
    }

    #[test]
    fn task_fields_follow_docker() {
        let task = Task {
            row: TaskRow {
                slot: "web.1".into(),
                id: "knit-web-1-abc".into(),
                node: "host-1".into(),
                node_id: "0123456789abcdef".into(),
                desired_state: "running".into(),
                state: "running".into(),
                health: "healthy".into(),
                spec_version: 2,
                current: true,
                host_port: Some(31000),
                error: None,
                cpu_millis: Some(125),
            },
            service: "web".into(),
            image: "nginx".into(),
        };
        let format: Format =
            "{{.ID}} {{.Name}} {{.Image}} {{.Node}} {{.DesiredState}} {{.CurrentState}} {{.Ports}} {{.CPU}}"
                .parse()
                .unwrap();
        assert_eq!(
            render(&[task], &format).unwrap(),
            "knit-web-1-abc web.1 nginx host-1 running running 31000 12%\n"
        );
    }
}
