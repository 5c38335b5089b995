"""`make migrate`: bring WAREHOUSE_URL (default: the demo's SQLite) to the latest schema."""

from resources.settings import demo_dir, warehouse_url
from scripts.environment import migrate

if __name__ == "__main__":
    demo_dir().mkdir(parents=True, exist_ok=True)
    migrate()
    print(f"migrated {warehouse_url().split('@')[-1]} to the latest revision")
