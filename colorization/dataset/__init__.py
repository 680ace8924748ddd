"""The training set on disk: photos preprocessed into Lab Parquet shards, the Xception embeddings written beside
them, the colour prior of the classification objective, and the batches training streams from them."""
