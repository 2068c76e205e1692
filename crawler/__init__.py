"""Crawl job: Scrapy spider, HTML pass (visible vs hidden text), cloaking probe, raw shards."""
