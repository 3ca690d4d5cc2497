"""The whole route table on one screen."""

from __future__ import annotations

from starlette.routing import Route

from glimpse.api.v2 import cache, discovery, image_data, images, imports, members, metadefs, stores

ROUTES = [
    Route("/", discovery.versions_root, methods=["GET"]),
    Route("/versions", discovery.versions, methods=["GET"]),
    Route("/healthcheck", discovery.healthcheck, methods=["GET", "HEAD"]),
    Route("/v2/schemas/image", discovery.image_schema, methods=["GET"]),
    Route("/v2/schemas/images", discovery.images_schema, methods=["GET"]),
    Route("/v2/schemas/member", discovery.member_schema, methods=["GET"]),
    Route("/v2/schemas/members", discovery.members_schema, methods=["GET"]),
    Route("/v2/info/import", imports.import_info, methods=["GET"]),
    Route("/v2/info/usage", discovery.usage, methods=["GET"]),
    Route("/v2/images/{image_id}/stage", imports.stage, methods=["PUT"]),
    Route("/v2/images/{image_id}/import", imports.import_image, methods=["POST"]),
    Route("/v2/images/{image_id}/tasks", imports.image_tasks, methods=["GET"]),
    Route("/v2/tasks", imports.list_tasks, methods=["GET"]),
    Route("/v2/tasks", imports.create_task, methods=["POST"]),
    Route("/v2/tasks/{task_id}", imports.show_task, methods=["GET"]),
    Route("/v2/schemas/task", imports.task_schema, methods=["GET"]),
    Route("/v2/schemas/tasks", imports.tasks_schema, methods=["GET"]),
    Route("/v2/info/stores", stores.list_stores, methods=["GET"]),
    Route("/v2/info/stores/detail", stores.stores_detail, methods=["GET"]),
    Route("/v2/stores/{store_id}/{image_id}", stores.delete_from_store, methods=["DELETE"]),
    Route("/v2/images/{image_id}/locations", stores.list_locations, methods=["GET"]),
    Route("/v2/images/{image_id}/locations", stores.add_location, methods=["POST"]),
    Route("/v2/images", images.list_images, methods=["GET"]),
    Route("/v2/images", images.create_image, methods=["POST"]),
    Route("/v2/images/{image_id}", images.show_image, methods=["GET"]),
    Route("/v2/images/{image_id}", images.update_image, methods=["PATCH"]),
    Route("/v2/images/{image_id}", images.delete_image, methods=["DELETE"]),
    Route("/v2/images/{image_id}/file", image_data.upload, methods=["PUT"]),
    Route("/v2/images/{image_id}/file", image_data.download, methods=["GET"]),
    Route("/v2/images/{image_id}/tags/{tag:path}", images.add_tag, methods=["PUT"]),
    Route("/v2/images/{image_id}/tags/{tag:path}", images.delete_tag, methods=["DELETE"]),
    Route("/v2/images/{image_id}/actions/deactivate", images.deactivate, methods=["POST"]),
    Route("/v2/images/{image_id}/actions/reactivate", images.reactivate, methods=["POST"]),
    Route("/v2/images/{image_id}/members", members.list_members, methods=["GET"]),
    Route("/v2/images/{image_id}/members", members.add_member, methods=["POST"]),
    Route("/v2/images/{image_id}/members/{member_id}", members.show_member, methods=["GET"]),
    Route("/v2/images/{image_id}/members/{member_id}", members.update_member, methods=["PUT"]),
    Route(
        "/v2/images/{image_id}/members/{member_id}", members.delete_member, methods=["DELETE"]
    ),
    Route("/v2/cache", cache.show_cache, methods=["GET"]),
    Route("/v2/cache", cache.clear, methods=["DELETE"]),
    Route("/v2/cache/clean", cache.clean, methods=["POST"]),
    Route("/v2/cache/prune", cache.prune, methods=["POST"]),
    Route("/v2/cache/{image_id}", cache.queue_image, methods=["PUT"]),
    Route("/v2/cache/{image_id}", cache.delete_entry, methods=["DELETE"]),
    *metadefs.ROUTES,
]
