"""Seed the 13 operation presets with the design guide's defaults.

The values are copied here (not imported) so this migration keeps meaning what it
meant when it was written, whatever the code's defaults become later.
"""

from django.db import migrations

SEED = {
    # operation_type: (temperature, top_p, max_tokens, timeout_s, retries, cached, ttl, description)
    "planning": (0.7, 0.9, 2000, 60, 2, False, 3600, "Video plan generation"),
    "scripting": (0.8, 0.95, 4000, 120, 2, False, 3600, "Script content"),
    "ssml_planning": (0.3, 0.9, 3000, 90, 2, True, 3600, "SSML markup"),
    "visual_prompts": (0.9, 0.95, 1500, 45, 2, False, 3600, "Visual generation prompts"),
    "rag_retrieval": (0.2, 0.9, 2000, 60, 3, True, 86400, "RAG content retrieval"),
    "scene_analysis": (0.3, 0.9, 800, 30, 3, True, 3600, "Scene importance analysis"),
    "complexity_analysis": (0.2, 0.9, 1000, 30, 3, True, 3600, "Content complexity analysis"),
    "coherence_validation": (0.2, 0.9, 800, 30, 3, True, 3600, "Scene coherence validation"),
    "narrative_validation": (0.3, 0.9, 1500, 45, 3, True, 3600, "Narrative arc validation"),
    "transition_generation": (0.7, 0.9, 500, 20, 2, False, 3600, "Transition text"),
    "script_refinement": (0.6, 0.9, 3000, 90, 2, False, 3600, "Script editing"),
    "creative": (0.9, 0.95, 3000, 90, 2, False, 3600, "Creative generation"),
    "completion": (0.7, 0.9, 2000, 60, 2, False, 3600, "General completion"),
}


def seed(apps, schema_editor):
    OperationPreset = apps.get_model("presets", "OperationPreset")
    for op, (temp, top_p, tokens, timeout, retries, cached, ttl, desc) in SEED.items():
        OperationPreset.objects.get_or_create(
            operation_type=op,
            defaults={
                "temperature": temp,
                "top_p": top_p,
                "max_tokens": tokens,
                "timeout_seconds": timeout,
                "max_retries": retries,
                "cache_enabled": cached,
                "cache_ttl_seconds": ttl,
                "description": desc,
            },
        )


def unseed(apps, schema_editor):
    apps.get_model("presets", "OperationPreset").objects.filter(operation_type__in=SEED).delete()


class Migration(migrations.Migration):
    dependencies = [("presets", "0001_initial")]

    operations = [migrations.RunPython(seed, unseed)]
