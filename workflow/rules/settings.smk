# The settings each command reads (see common.smk), and the whole resolved config, each written by a job.
rule command_settings:
    output:
        settings=f"{R}/config/{{settings_key}}.yaml",
    log:
        f"{R}/logs/config/{{settings_key}}.log",
    params:
        values=lambda w: section_values(config, w.settings_key),
    run:
        write_sections(output.settings, wildcards.settings_key, params.values, log[0])


rule resolved_config:
    output:
        config=RESOLVED,
    log:
        f"{R}/logs/config/resolved.log",
    params:
        config=dict(config),
    run:
        write_resolved_config(output.config, params.config, log[0])
