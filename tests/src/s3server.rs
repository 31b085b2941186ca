//! A real S3-compatible server (s3s-fs) on 127.0.0.1 for the S3 tests (being written).
