from typing import Any

from django.utils import timezone
from rest_framework import serializers

from access.models import ApiKey
from access.scopes import ALL_SCOPES
from access.selectors import user_for_reference


class ApiKeyOutputSerializer(serializers.ModelSerializer):
    user = serializers.CharField(source="user.username")
    user_id = serializers.IntegerField()
    state = serializers.SerializerMethodField()
    replaced_by = serializers.IntegerField(source="replaced_by_id", allow_null=True)

    class Meta:
        model = ApiKey
        fields = [
            "id",
            "name",
            "prefix",
            "user",
            "user_id",
            "scopes",
            "act_as_customer",
            "state",
            "created_at",
            "expires_at",
            "revoked_at",
            "last_used_at",
            "replaced_by",
            "legacy_token",
        ]

    def get_state(self, api_key: ApiKey) -> str:
        return api_key.state()


class ApiKeyCreatedOutputSerializer(ApiKeyOutputSerializer):
    key = serializers.CharField(help_text="the key itself: shown this once, never again")

    class Meta(ApiKeyOutputSerializer.Meta):
        fields = [*ApiKeyOutputSerializer.Meta.fields, "key"]


def _future(value: Any) -> Any:
    if value is not None and value <= timezone.now():
        raise serializers.ValidationError("Must be in the future.", code="not_in_future")
    return value


class ApiKeyCreateInputSerializer(serializers.Serializer):
    user = serializers.CharField(max_length=150, help_text="the owner's id or username")
    name = serializers.CharField(max_length=100)
    scopes = serializers.ListField(
        child=serializers.ChoiceField(choices=list(ALL_SCOPES)), min_length=1, max_length=20
    )
    act_as_customer = serializers.BooleanField(default=False)
    expires_at = serializers.DateTimeField(required=False, allow_null=True, default=None)

    def validate_user(self, value: str) -> Any:
        user = user_for_reference(value)
        if user is None:
            raise serializers.ValidationError("No such active user.", code="unknown_user")
        return user

    def validate_expires_at(self, value: Any) -> Any:
        return _future(value)


class ApiKeyRotateInputSerializer(serializers.Serializer):
    old_key_expires_at = serializers.DateTimeField(
        required=False,
        allow_null=True,
        default=None,
        help_text="until when the old key keeps working (default: API_KEY_ROTATION_OVERLAP)",
    )
    expires_at = serializers.DateTimeField(
        required=False, allow_null=True, default=None, help_text="the new key's expiry"
    )

    def validate_old_key_expires_at(self, value: Any) -> Any:
        return _future(value)

    def validate_expires_at(self, value: Any) -> Any:
        return _future(value)
