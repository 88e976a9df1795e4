"""Models from other toolkits -> asr model directories."""
