//! `Serialize` for [`Record`] (the `serde` feature). A record is written as a map:
//!
//! ```text
//! {"topic":"facts","partition":3,"offset":40,"hlc":7713603779369791536,
//!  "id":"<64 hex>","signer":"<64 hex>","signature":"<128 hex>",
//!  "assertion":{"subject":…,"predicate":…,"object":…,"source":…,"issued_at":…}}
//! ```
//!
//! `assertion` is the decoded assertion in its JSON form; a record whose bytes do not
//! decode fails to serialise (with the decoder's reason). [`Ack`](crate::Ack) derives both
//! `Serialize` and `Deserialize`. A record has no `Deserialize`: it is a view of a fetch
//! answer's bytes; deserialise its `assertion` into a [`steme_protocol::Assertion`], or
//! its whole map into a type of your own.

use serde::ser::{Error, Serialize, SerializeMap, Serializer};

use crate::consumer::Record;

impl Serialize for Record {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let assertion = self.assertion().map_err(S::Error::custom)?;
        let mut map = s.serialize_map(Some(8))?;
        map.serialize_entry("topic", self.topic())?;
        map.serialize_entry("partition", &self.partition())?;
        map.serialize_entry("offset", &self.offset())?;
        map.serialize_entry("hlc", &self.hlc())?;
        map.serialize_entry("id", &self.id())?;
        map.serialize_entry("signer", &hex::encode(self.signer()))?;
        map.serialize_entry("signature", &hex::encode(self.signature()))?;
        map.serialize_entry("assertion", &assertion)?;
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use crate::Ack;
    use crate::consumer::Record;
    use crate::consumer::testing::fetched;
    use steme_protocol::AssertionId;

    #[test]
    fn a_record_serialises_with_its_place_ids_and_assertion()
    -> Result<(), Box<dyn std::error::Error>> {
        let mut records: Vec<Record> = Vec::new();
        crate::consumer::records_from(&"facts".into(), 3, 10, &fetched(), &mut records)?;
        let r = &records[0];
        let v = serde_json::to_value(r)?;
        let keys: Vec<&str> = v
            .as_object()
            .ok_or("not a map")?
            .keys()
            .map(String::as_str)
            .collect();
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        assert_eq!(
            sorted,
            [
                "assertion",
                "hlc",
                "id",
                "offset",
                "partition",
                "signature",
                "signer",
                "topic"
            ]
        );
        assert_eq!(v["offset"], r.offset());
        assert_eq!(v["hlc"], r.hlc());
        assert_eq!(v["id"], r.id().to_hex());
        assert_eq!(v["signer"], hex::encode(r.signer()));
        let assertion: steme_protocol::Assertion = serde_json::from_value(v["assertion"].clone())?;
        assert_eq!(assertion, r.assertion()?);
        Ok(())
    }

    #[test]
    fn an_ack_round_trips_through_json() -> Result<(), Box<dyn std::error::Error>> {
        let ack = Ack {
            id: AssertionId([3; 32]),
            partition: 2,
            offset: 9,
            hlc: 77,
            duplicate: true,
        };
        let v = serde_json::to_value(ack)?;
        assert_eq!(
            v,
            serde_json::json!({"id": "03".repeat(32), "partition": 2, "offset": 9, "hlc": 77, "duplicate": true})
        );
        assert_eq!(serde_json::from_value::<Ack>(v)?, ack);
        Ok(())
    }
}
