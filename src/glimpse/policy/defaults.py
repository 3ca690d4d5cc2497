"""Glance's policy rule names with their secure-RBAC defaults, each naming what it guards.

The names and check strings are Glance's so that an operator's existing
``policy.yaml`` keeps working unchanged.
"""

from __future__ import annotations

from oslo_policy import policy

ADMIN = "rule:context_is_admin"
_MEMBER_OWN = f"{ADMIN} or (role:member and project_id:%(project_id)s)"
_READER_OWN = f"{ADMIN} or (role:reader and project_id:%(project_id)s)"
_READER_VISIBLE = (
    f"{ADMIN} or (role:reader and (project_id:%(project_id)s or "
    "project_id:%(member_id)s or 'community':%(visibility)s or "
    "'public':%(visibility)s or 'shared':%(visibility)s))"
)
_MEMBER_VISIBLE = _READER_VISIBLE.replace("role:reader", "role:member")
_MEMBER_OR_OWNER = (
    f"{ADMIN} or role:reader and (project_id:%(project_id)s or project_id:%(member_id)s)"
)
_METADEF_READ = (
    f"{ADMIN} or (role:reader and (project_id:%(project_id)s or 'public':%(visibility)s))"
)


def _rule(
    name: str, check: str, description: str, *operations: tuple[str, str]
) -> policy.RuleDefault:
    if operations:
        return policy.DocumentedRuleDefault(
            name=name,
            check_str=check,
            description=description,
            operations=[{"method": m, "path": p} for m, p in operations],
            scope_types=["project"],
        )
    return policy.RuleDefault(name=name, check_str=check, description=description)


RULES: list[policy.RuleDefault] = [
    _rule("default", "", "Rule used when no other applies."),
    _rule("context_is_admin", "role:admin", "Who counts as administrator."),
    _rule("service_api", "role:service or role:admin", "Service-to-service calls."),
    _rule(
        "add_image",
        f"{ADMIN} or (role:member and project_id:%(project_id)s and project_id:%(owner)s)",
        "Create an image.",
        ("POST", "/v2/images"),
    ),
    _rule("delete_image", _MEMBER_OWN, "Delete an image.", ("DELETE", "/v2/images/{image_id}")),
    _rule("get_image", _READER_VISIBLE, "Show an image.", ("GET", "/v2/images/{image_id}")),
    _rule("get_images", _READER_OWN, "List images.", ("GET", "/v2/images")),
    _rule("modify_image", _MEMBER_OWN, "Update an image.", ("PATCH", "/v2/images/{image_id}")),
    _rule("publicize_image", ADMIN, "Make an image public.", ("PATCH", "/v2/images/{image_id}")),
    _rule(
        "communitize_image",
        _MEMBER_OWN,
        "Make an image community.",
        ("PATCH", "/v2/images/{image_id}"),
    ),
    _rule(
        "download_image",
        _MEMBER_VISIBLE,
        "Download image data.",
        ("GET", "/v2/images/{image_id}/file"),
    ),
    _rule(
        "download_from_store",
        _MEMBER_VISIBLE,
        "Download image data from a chosen store.",
        ("GET", "/v2/images/{image_id}/file"),
    ),
    _rule("upload_image", _MEMBER_OWN, "Upload image data.", ("PUT", "/v2/images/{image_id}/file")),
    _rule(
        "delete_image_location",
        ADMIN,
        "Remove a location of an image.",
        ("PATCH", "/v2/images/{image_id}"),
    ),
    _rule(
        "get_image_location",
        _READER_OWN,
        "See the locations of an image.",
        ("GET", "/v2/images/{image_id}"),
    ),
    _rule(
        "set_image_location",
        _MEMBER_OWN,
        "Set a location of an image.",
        ("PATCH", "/v2/images/{image_id}"),
    ),
    _rule(
        "add_image_location",
        "rule:service_api or (role:member and project_id:%(project_id)s and project_id:%(owner)s)",
        "Add a location to an image.",
        ("POST", "/v2/images/{image_id}/locations"),
    ),
    _rule(
        "fetch_image_location",
        "rule:service_api",
        "List the locations of an image.",
        ("GET", "/v2/images/{image_id}/locations"),
    ),
    _rule(
        "add_member",
        _MEMBER_OWN,
        "Share an image with a project.",
        ("POST", "/v2/images/{image_id}/members"),
    ),
    _rule(
        "delete_member",
        _MEMBER_OWN,
        "Stop sharing an image with a project.",
        ("DELETE", "/v2/images/{image_id}/members/{member_id}"),
    ),
    _rule(
        "get_member",
        _MEMBER_OR_OWNER,
        "Show one member of an image.",
        ("GET", "/v2/images/{image_id}/members/{member_id}"),
    ),
    _rule(
        "get_members",
        _MEMBER_OR_OWNER,
        "List the members of an image.",
        ("GET", "/v2/images/{image_id}/members"),
    ),
    _rule(
        "modify_member",
        f"{ADMIN} or (role:member and project_id:%(member_id)s)",
        "Accept or reject a shared image.",
        ("PUT", "/v2/images/{image_id}/members/{member_id}"),
    ),
    _rule("manage_image_cache", ADMIN, "Manage the image cache."),
    _rule(
        "deactivate",
        _MEMBER_OWN,
        "Deactivate an image.",
        ("POST", "/v2/images/{image_id}/actions/deactivate"),
    ),
    _rule(
        "reactivate",
        _MEMBER_OWN,
        "Reactivate an image.",
        ("POST", "/v2/images/{image_id}/actions/reactivate"),
    ),
    _rule(
        "copy_image",
        ADMIN,
        "Copy an image to more stores.",
        ("POST", "/v2/images/{image_id}/import"),
    ),
    _rule(
        "list_cached_nodes",
        ADMIN,
        "List nodes that cache an image.",
        ("GET", "/v2/cache/nodes/{image_id}"),
    ),
    _rule("get_task", "rule:default", "Show a task.", ("GET", "/v2/tasks/{task_id}")),
    _rule("get_tasks", "rule:default", "List tasks.", ("GET", "/v2/tasks")),
    _rule("add_task", "rule:default", "Create a task.", ("POST", "/v2/tasks")),
    _rule("modify_task", "rule:default", "Delete a task.", ("DELETE", "/v2/tasks/{task_id}")),
    _rule("tasks_api_access", ADMIN, "Use the tasks API at all.", ("GET", "/v2/tasks")),
    _rule("cache_image", ADMIN, "Queue an image for caching.", ("PUT", "/v2/cache/{image_id}")),
    _rule("cache_list", ADMIN, "List the image cache.", ("GET", "/v2/cache")),
    _rule("cache_delete", ADMIN, "Remove cached images.", ("DELETE", "/v2/cache")),
    _rule("cache_clean", ADMIN, "Clean the image cache.", ("POST", "/v2/cache/clean")),
    _rule("cache_prune", ADMIN, "Prune the image cache.", ("POST", "/v2/cache/prune")),
    _rule(
        "stores_info_detail",
        f"{ADMIN} or rule:service_api",
        "Show store details.",
        ("GET", "/v2/info/stores/detail"),
    ),
    _rule("metadef_default", "", "Base rule for metadefs."),
    _rule("metadef_admin", ADMIN, "Who may change metadefs."),
    _rule(
        "get_metadef_namespace",
        _METADEF_READ,
        "Show a metadef namespace.",
        ("GET", "/v2/metadefs/namespaces/{namespace_name}"),
    ),
    _rule(
        "get_metadef_namespaces",
        _READER_OWN,
        "List metadef namespaces.",
        ("GET", "/v2/metadefs/namespaces"),
    ),
    _rule(
        "modify_metadef_namespace",
        "rule:metadef_admin",
        "Update a metadef namespace.",
        ("PUT", "/v2/metadefs/namespaces/{namespace_name}"),
    ),
    _rule(
        "add_metadef_namespace",
        "rule:metadef_admin",
        "Create a metadef namespace.",
        ("POST", "/v2/metadefs/namespaces"),
    ),
    _rule(
        "delete_metadef_namespace",
        "rule:metadef_admin",
        "Delete a metadef namespace.",
        ("DELETE", "/v2/metadefs/namespaces/{namespace_name}"),
    ),
    _rule(
        "get_metadef_object",
        _METADEF_READ,
        "Show a metadef object.",
        ("GET", "/v2/metadefs/namespaces/{namespace_name}/objects/{object_name}"),
    ),
    _rule(
        "get_metadef_objects",
        _METADEF_READ,
        "List metadef objects.",
        ("GET", "/v2/metadefs/namespaces/{namespace_name}/objects"),
    ),
    _rule(
        "modify_metadef_object",
        "rule:metadef_admin",
        "Update a metadef object.",
        ("PUT", "/v2/metadefs/namespaces/{namespace_name}/objects/{object_name}"),
    ),
    _rule(
        "add_metadef_object",
        "rule:metadef_admin",
        "Create a metadef object.",
        ("POST", "/v2/metadefs/namespaces/{namespace_name}/objects"),
    ),
    _rule(
        "delete_metadef_object",
        "rule:metadef_admin",
        "Delete a metadef object.",
        ("DELETE", "/v2/metadefs/namespaces/{namespace_name}/objects/{object_name}"),
    ),
    _rule(
        "list_metadef_resource_types",
        _METADEF_READ,
        "List metadef resource types.",
        ("GET", "/v2/metadefs/resource_types"),
    ),
    _rule(
        "get_metadef_resource_type",
        _METADEF_READ,
        "Show resource type associations.",
        ("GET", "/v2/metadefs/namespaces/{namespace_name}/resource_types"),
    ),
    _rule(
        "add_metadef_resource_type_association",
        "rule:metadef_admin",
        "Associate a resource type.",
        ("POST", "/v2/metadefs/namespaces/{namespace_name}/resource_types"),
    ),
    _rule(
        "remove_metadef_resource_type_association",
        "rule:metadef_admin",
        "Dissociate a resource type.",
        ("DELETE", "/v2/metadefs/namespaces/{namespace_name}/resource_types/{name}"),
    ),
    _rule(
        "get_metadef_property",
        _METADEF_READ,
        "Show a metadef property.",
        ("GET", "/v2/metadefs/namespaces/{namespace_name}/properties/{property_name}"),
    ),
    _rule(
        "get_metadef_properties",
        _METADEF_READ,
        "List metadef properties.",
        ("GET", "/v2/metadefs/namespaces/{namespace_name}/properties"),
    ),
    _rule(
        "modify_metadef_property",
        "rule:metadef_admin",
        "Update a metadef property.",
        ("PUT", "/v2/metadefs/namespaces/{namespace_name}/properties/{property_name}"),
    ),
    _rule(
        "add_metadef_property",
        "rule:metadef_admin",
        "Create a metadef property.",
        ("POST", "/v2/metadefs/namespaces/{namespace_name}/properties"),
    ),
    _rule(
        "remove_metadef_property",
        "rule:metadef_admin",
        "Delete a metadef property.",
        ("DELETE", "/v2/metadefs/namespaces/{namespace_name}/properties/{property_name}"),
    ),
    _rule(
        "get_metadef_tag",
        _METADEF_READ,
        "Show a metadef tag.",
        ("GET", "/v2/metadefs/namespaces/{namespace_name}/tags/{tag_name}"),
    ),
    _rule(
        "get_metadef_tags",
        _METADEF_READ,
        "List metadef tags.",
        ("GET", "/v2/metadefs/namespaces/{namespace_name}/tags"),
    ),
    _rule(
        "modify_metadef_tag",
        "rule:metadef_admin",
        "Update a metadef tag.",
        ("PUT", "/v2/metadefs/namespaces/{namespace_name}/tags/{tag_name}"),
    ),
    _rule(
        "add_metadef_tag",
        "rule:metadef_admin",
        "Create a metadef tag.",
        ("POST", "/v2/metadefs/namespaces/{namespace_name}/tags/{tag_name}"),
    ),
    _rule(
        "add_metadef_tags",
        "rule:metadef_admin",
        "Create metadef tags.",
        ("POST", "/v2/metadefs/namespaces/{namespace_name}/tags"),
    ),
    _rule(
        "delete_metadef_tag",
        "rule:metadef_admin",
        "Delete a metadef tag.",
        ("DELETE", "/v2/metadefs/namespaces/{namespace_name}/tags/{tag_name}"),
    ),
    _rule(
        "delete_metadef_tags",
        "rule:metadef_admin",
        "Delete all tags of a namespace.",
        ("DELETE", "/v2/metadefs/namespaces/{namespace_name}/tags"),
    ),
]
