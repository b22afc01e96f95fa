//! Test helpers shared by the store's backend tests.

/// Runs an `async fn(Store)` as two tests: on PostgreSQL and on SQLite.
macro_rules! on_both_backends {
    ($($case:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let db = crate::testing::TestDb::postgres().await.unwrap();
                    super::$case(db.store().await.unwrap()).await;
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let db = crate::testing::TestDb::sqlite().unwrap();
                    super::$case(db.store().await.unwrap()).await;
                }
            )*
        }
    };
}
