from django.urls import path

from aura_orchestrator.gateway import views
from aura_orchestrator.gateway.messages import views as messages

app_name = "gateway"

urlpatterns = [
    path("chat/completions", views.ChatCompletionsView.as_view(), name="chat-completions"),
    path("messages", messages.MessagesView.as_view(), name="messages"),
    path("messages/count_tokens", messages.CountTokensView.as_view(), name="count-tokens"),
    path("embeddings", views.EmbeddingsView.as_view(), name="embeddings"),
    path("models", views.ModelListView.as_view(), name="models"),
    # Ids of pinned models contain a slash: `provider/model`.
    path("models/<path:model_id>", views.ModelDetailView.as_view(), name="model"),
]
