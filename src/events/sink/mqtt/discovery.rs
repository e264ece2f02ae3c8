//! The topics under the prefix and Home Assistant's discovery messages
//! (`<discovery>/<component>/<device>/<object>/config`, retained), which make a binary
//! sensor, a sensor and an image entity appear without configuration.

use serde_json::{json, Value};

/// A message to publish (QoS 1 unless said otherwise).
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
}

impl Message {
    pub fn retained(topic: &str, payload: impl Into<Vec<u8>>) -> Message {
        Message {
            topic: topic.to_string(),
            payload: payload.into(),
            retain: true,
        }
    }

    pub fn once(topic: &str, payload: impl Into<Vec<u8>>) -> Message {
        Message {
            retain: false,
            ..Message::retained(topic, payload)
        }
    }
}

/// The availability payloads of `PREFIX/status` (the last will is [`OFFLINE`]).
pub const ONLINE: &str = "online";
pub const OFFLINE: &str = "offline";

/// The topics under the prefix.
#[derive(Clone, Debug)]
pub struct Topics {
    /// `online`/`offline`, retained; the last will is `offline`.
    pub status: String,
    /// `ON` while an event is under way, else `OFF`; retained.
    pub state: String,
    /// The anomaly score, at most once a second.
    pub score: String,
    /// The last event's JSON, retained (the binary sensor's attributes).
    pub attributes: String,
    /// The last snapshot's bytes, retained (the image entity).
    pub snapshot: String,
    /// Every phase of every event as JSON, not retained.
    pub event: String,
}

impl Topics {
    pub fn new(prefix: &str) -> Topics {
        let t = |name: &str| format!("{prefix}/{name}");
        Topics {
            status: t("status"),
            state: t("state"),
            score: t("score"),
            attributes: t("attributes"),
            snapshot: t("snapshot"),
            event: t("event"),
        }
    }
}

/// Where and as whom discovery is announced.
#[derive(Clone, Debug)]
pub struct Discovery {
    /// The discovery prefix (`homeassistant`).
    pub prefix: String,
    /// The sanitised device id (the node id in the topics, part of every unique id).
    pub device: String,
}

impl Discovery {
    /// The three configurations: the binary sensor (`anomaly`), the score sensor (`score`)
    /// and the image (`snapshot`, its `content_type` the snapshots' MIME type).
    pub fn messages(&self, topics: &Topics, content_type: &str) -> Vec<Message> {
        let ids = ["anomaly", "score", "snapshot"];
        ids.iter()
            .map(|&object| self.message(object, topics, content_type))
            .collect()
    }

    /// The configuration of one entity (`anomaly`, `score` or `snapshot`).
    pub fn message(&self, object: &str, topics: &Topics, content_type: &str) -> Message {
        let (component, mut config) = match object {
            "anomaly" => (
                "binary_sensor",
                json!({
                    "name": "Anomaly",
                    "device_class": "problem",
                    "state_topic": topics.state,
                    "payload_on": "ON",
                    "payload_off": "OFF",
                    "json_attributes_topic": topics.attributes,
                }),
            ),
            "score" => (
                "sensor",
                json!({
                    "name": "Anomaly score",
                    "state_topic": topics.score,
                    "state_class": "measurement",
                    "suggested_display_precision": 3,
                }),
            ),
            _ => (
                "image",
                json!({
                    "name": "Snapshot",
                    "image_topic": topics.snapshot,
                    "content_type": content_type,
                }),
            ),
        };
        let common = self.common(object, topics);
        if let (Value::Object(c), Value::Object(extra)) = (&mut config, common) {
            c.extend(extra);
        }
        let topic = format!(
            "{}/{component}/{}/{object}/config",
            self.prefix, self.device
        );
        Message::retained(&topic, config.to_string())
    }

    /// What every entity's configuration carries: its unique id, availability, the device.
    fn common(&self, object: &str, topics: &Topics) -> Value {
        let version = env!("CARGO_PKG_VERSION");
        json!({
            "unique_id": format!("ign-edge_{}_{object}", self.device),
            "availability_topic": topics.status,
            "payload_available": ONLINE,
            "payload_not_available": OFFLINE,
            "qos": 1,
            "device": {
                "identifiers": [format!("ign-edge_{}", self.device)],
                "name": format!("ign-edge {}", self.device),
                "model": "ign-edge",
                "manufacturer": "ign-edge",
                "sw_version": version,
            },
            "origin": { "name": "ign-edge", "sw_version": version },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_entities_share_a_device_and_availability() {
        let d = Discovery {
            prefix: "homeassistant".into(),
            device: "pi5".into(),
        };
        let topics = Topics::new("ign-edge/pi5");
        let msgs = d.messages(&topics, "image/png");
        let names: Vec<&str> = msgs.iter().map(|m| m.topic.as_str()).collect();
        assert_eq!(
            names,
            [
                "homeassistant/binary_sensor/pi5/anomaly/config",
                "homeassistant/sensor/pi5/score/config",
                "homeassistant/image/pi5/snapshot/config",
            ]
        );
        let v: Vec<Value> = msgs
            .iter()
            .map(|m| serde_json::from_slice(&m.payload).unwrap())
            .collect();
        assert!(msgs.iter().all(|m| m.retain));
        for c in &v {
            assert_eq!(c["availability_topic"], "ign-edge/pi5/status");
            assert_eq!(c["device"]["identifiers"][0], "ign-edge_pi5");
            assert_eq!(c["device"]["model"], "ign-edge");
        }
        assert_eq!(v[0]["state_topic"], "ign-edge/pi5/state");
        assert_eq!(v[0]["device_class"], "problem");
        assert_eq!(v[1]["state_class"], "measurement");
        assert_eq!(v[2]["image_topic"], "ign-edge/pi5/snapshot");
        assert_eq!(v[2]["content_type"], "image/png");
        assert_eq!(v[2]["unique_id"], "ign-edge_pi5_snapshot");
    }
}
