//! Reading a stored document straight into [`StoredDocument`].
//!
//! tantivy's own document type copies every stored value twice on the way in (into a value,
//! then into the document's arena) and ibex copied the strings once more out of it: for a
//! search over long documents (qmsum-val's 10,000-word transcripts) those copies of each hit's
//! text were about a sixth of the search (`bench/bm25.sh`, profiled). Values here are decoded
//! once, into the strings and byte fields [`StoredDocument`] keeps.

use tantivy::schema::document::{
    DeserializeError, DocumentDeserialize, DocumentDeserializer, ValueDeserialize,
    ValueDeserializer, ValueVisitor,
};
use tantivy::schema::{Field, Value};
use tantivy::TantivyDocument;

/// One stored value, as far as ibex's schema needs to tell them apart.
pub(crate) enum StoredValue {
    Text(String),
    Bytes(Vec<u8>),
    Number(u64),
    /// A value of a type ibex's schema does not store.
    Other,
}

impl ValueDeserialize for StoredValue {
    fn deserialize<'de, D>(deserializer: D) -> Result<Self, DeserializeError>
    where
        D: ValueDeserializer<'de>,
    {
        deserializer.deserialize_any(StoredValueVisitor)
    }
}

struct StoredValueVisitor;

impl ValueVisitor for StoredValueVisitor {
    type Value = StoredValue;

    fn visit_null(&self) -> Result<StoredValue, DeserializeError> {
        Ok(StoredValue::Other)
    }
    fn visit_string(&self, value: String) -> Result<StoredValue, DeserializeError> {
        Ok(StoredValue::Text(value))
    }
    fn visit_u64(&self, value: u64) -> Result<StoredValue, DeserializeError> {
        Ok(StoredValue::Number(value))
    }
    fn visit_i64(&self, _: i64) -> Result<StoredValue, DeserializeError> {
        Ok(StoredValue::Other)
    }
    fn visit_f64(&self, _: f64) -> Result<StoredValue, DeserializeError> {
        Ok(StoredValue::Other)
    }
    fn visit_bool(&self, _: bool) -> Result<StoredValue, DeserializeError> {
        Ok(StoredValue::Other)
    }
    fn visit_bytes(&self, value: Vec<u8>) -> Result<StoredValue, DeserializeError> {
        Ok(StoredValue::Bytes(value))
    }
    // Arrays, objects and the rarer leaves keep the trait's answer (an error): ibex's schema
    // stores none, and the caller then reads the document the general way.
}

/// A stored document's values by field, first value of each field kept.
pub(crate) struct StoredFields(Vec<(Field, StoredValue)>);

impl DocumentDeserialize for StoredFields {
    fn deserialize<'de, D>(mut deserializer: D) -> Result<Self, DeserializeError>
    where
        D: DocumentDeserializer<'de>,
    {
        let mut values = Vec::with_capacity(deserializer.size_hint());
        while let Some((field, value)) = deserializer.next_field::<StoredValue>()? {
            values.push((field, value));
        }
        Ok(StoredFields(values))
    }
}

impl StoredFields {
    /// The values of a document tantivy has already read.
    pub(crate) fn from_document(doc: &TantivyDocument) -> StoredFields {
        StoredFields(
            doc.field_values()
                .map(|(field, value)| {
                    let value = if let Some(text) = value.as_str() {
                        StoredValue::Text(text.to_string())
                    } else if let Some(bytes) = value.as_bytes() {
                        StoredValue::Bytes(bytes.to_vec())
                    } else if let Some(n) = value.as_u64() {
                        StoredValue::Number(n)
                    } else {
                        StoredValue::Other
                    };
                    (field, value)
                })
                .collect(),
        )
    }

    /// The first value of `field`, taken out (later calls for the same field find nothing).
    fn take(&mut self, field: Field) -> Option<StoredValue> {
        self.0
            .iter_mut()
            .find(|(f, _)| *f == field)
            .map(|(_, value)| std::mem::replace(value, StoredValue::Other))
    }

    /// The first text value of `field`, or empty.
    pub(crate) fn take_text(&mut self, field: Field) -> String {
        match self.take(field) {
            Some(StoredValue::Text(text)) => text,
            _ => String::new(),
        }
    }

    /// The first bytes value of `field`, or empty.
    pub(crate) fn take_bytes(&mut self, field: Field) -> Vec<u8> {
        match self.take(field) {
            Some(StoredValue::Bytes(bytes)) => bytes,
            _ => Vec::new(),
        }
    }

    /// The first number value of `field`, or 0.
    pub(crate) fn take_number(&mut self, field: Field) -> u64 {
        match self.take(field) {
            Some(StoredValue::Number(n)) => n,
            _ => 0,
        }
    }
}
