-- Runs once, when the PostgreSQL volume is created: a database for truesync's store beside
-- Airflow's metadata database (created by the image from POSTGRES_DB).
CREATE DATABASE truesync;
